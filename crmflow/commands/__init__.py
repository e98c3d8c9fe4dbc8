"""What each command does, importable without the command line: eval streams, test cases,
lint reports, plan rendering, and looking at and steering a running crmflow.

May import: crmflow.daemon and everything below it; never crmflow.cli.
"""
