"""crmflow: CRM workflow automation as files and a command line."""

__version__ = "0.1.0"
