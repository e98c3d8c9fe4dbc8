"""Which function carries out each action type.

Imported only when an action is really carried out (not by `crmflow.engine.effects`),
so dry runs never load the mail and web modules. `wait` has no effect: the executor
holds the actions behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from crmflow.engine.effects import messages, records, sms, webhooks
from crmflow.engine.effects.base import Job, Outcome

Effect = Callable[[Job], Outcome]


class _Effects(dict[str, Effect]):
    """The built-in effects; an action type from a plugin is looked up in the registry
    the first time it is asked for (crmflow.rules.plugins)."""

    def __missing__(self, action_type: str) -> Effect:
        from crmflow.rules.registry import ACTIONS

        definition = ACTIONS.get(action_type)
        if definition is None or definition.run is None:
            raise KeyError(action_type)
        self[action_type] = definition.run
        return definition.run


EFFECTS: dict[str, Effect] = _Effects(
    {
        "notify": messages.notify,
        "email": messages.email,
        "warn": messages.warn,
        "document": messages.document,
        "create": records.create,
        "update": records.update,
        "set_stage": records.set_stage,
        "delete": records.delete,
        "generate_code": records.generate_code,
        "webhook": webhooks.webhook,
        "sms": sms.sms,
    }
)
