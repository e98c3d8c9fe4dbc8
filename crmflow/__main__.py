"""`python -m crmflow`: the same command line as the `crmflow` script."""

from crmflow.cli import main

main()
