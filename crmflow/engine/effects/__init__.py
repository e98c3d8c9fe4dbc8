"""Carrying actions out: each action type's effect on the CRM, the mail and the web.

The registry's ActionDef names its effect (`module:function`); effects are imported only
when an action is really carried out, so dry runs never load requests or SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from crmflow.engine.effects.base import Job, Outcome

__all__ = ["Job", "Outcome", "effect_for"]


def effect_for(action_type: str) -> Any:
    from crmflow.rules.registry import ACTIONS

    path = ACTIONS[action_type].effect
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)
