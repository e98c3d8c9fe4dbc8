"""Carrying actions out: each action type's effect on the CRM, the mail and the web.

One function per action type, `Job` in, `Outcome` out; `by_type.EFFECTS` maps types to
them. May import crmflow.crm, crmflow.rules and the top-level leaves.
"""
