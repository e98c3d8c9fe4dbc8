"""`crmflow run`: change capture, the polling loop, leadership among daemons, the lock on a
SQLite state, and the daemon's log.

May import: crmflow.engine and everything below it; never crmflow.commands or crmflow.cli.
"""
