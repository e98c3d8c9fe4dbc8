"""The workflow language: YAML with positions → schema and semantic findings → compiled,
indexed workflows (the registry of triggers, operators and actions, and the JSON Schemas
generated from it).

May import: the shared leaves (errors, findings, timeutil, durations, cron, values, keys);
crmflow.config only as a type.
"""
