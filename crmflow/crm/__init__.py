"""The CRM database: records and relations through SQLAlchemy Core, exactly-once writes,
and the demo CRM.

May import: crmflow.config, crmflow.rules (the entity model) and the shared leaves; never
crmflow.state.
"""
