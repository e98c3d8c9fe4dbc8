"""Event + workflows + now → plan → outcomes: events, the evaluator and its matcher, and the
executor with the effects of each action type (CRM writes, mail, webhooks).

May import: crmflow.crm, crmflow.state, crmflow.config, crmflow.rules and the shared leaves.
"""
