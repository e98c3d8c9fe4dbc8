"""A shadow run's effects (`crmflow run --shadow`): each says what it would have done.

The daemon watches the real CRM and judges every change as it would, but nothing leaves
it: no CRM write, no e-mail, no webhook, no text message. What an action would have done
goes into the (separate) state's history as a `shadow` row, so new workflows can be
tried on live data before they act.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from crmflow.engine.effects.base import Job, Outcome
from crmflow.rules.registry import ACTIONS

# Which parameters say best what an action would do, shown in the history.
_SHOWN = {
    "notify": ("to", "subject"),
    "email": ("to", "subject"),
    "sms": ("to", "text"),
    "webhook": ("method", "url"),
    "create": ("entity", "values"),
    "update": ("target", "values"),
    "set_stage": ("stage",),
    "delete": (),
    "generate_code": ("length",),
    "warn": ("message",),
    "document": ("template", "name"),
}


def _summary(job: Job) -> str:
    params = job.params if isinstance(job.params, dict) else {}
    keys = _SHOWN.get(job.action.type, tuple(params))
    shown = {k: params[k] for k in keys if k in params}
    text = json.dumps(shown, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def _would(job: Job) -> Outcome:
    output = job.action.definition.dry_output(job.params, job.services.rng)
    return Outcome("done", f"shadow: would {job.action.type} {_summary(job)}", output)


def shadow_effects() -> dict[str, Callable[[Job], Outcome]]:
    """An effect for every action type (plugins' too) that only says what it would do."""
    return {name: _would for name in ACTIONS.names() if name != "wait"}
