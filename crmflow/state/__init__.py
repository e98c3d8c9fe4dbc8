"""crmflow's own database: pending actions, history, cooldowns, snapshots, the daemons'
registry. Used by the engine and the daemon alike.

May import: crmflow.config, crmflow.rules and the shared leaves; never crmflow.crm.
"""
