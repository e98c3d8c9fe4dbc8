"""Which function carries out each action type.

Imported only when an action is really carried out (not by `crmflow.engine.effects`),
so dry runs never load the mail and web modules. `wait` has no effect: the executor
holds the actions behind it.
"""

from __future__ import annotations

from collections.abc import Callable

from crmflow.engine.effects import messages, records, webhooks
from crmflow.engine.effects.base import Job, Outcome

Effect = Callable[[Job], Outcome]

EFFECTS: dict[str, Effect] = {
    "notify": messages.notify,
    "email": messages.email,
    "warn": messages.warn,
    "create": records.create,
    "update": records.update,
    "set_stage": records.set_stage,
    "delete": records.delete,
    "generate_code": records.generate_code,
    "webhook": webhooks.webhook,
}
