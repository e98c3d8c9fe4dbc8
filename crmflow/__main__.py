from crmflow.cli import main

main()
