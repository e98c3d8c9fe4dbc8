"""Actions from other packages: the `crmflow.actions` entry point group.

A package registers an action by naming a `CustomAction` in its metadata:

    [project.entry-points."crmflow.actions"]
    ticket = "acme_crmflow:TICKET"

and it is then an action like the built-in ones: in `crmflow schema`, checked by lint,
in the reference, rendered as templates, run through the executor with the same
idempotency key, retries and history. A plugin that cannot be loaded, or that names an
action twice, is a configuration error of one line naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from crmflow.errors import ConfigError
from crmflow.rules.registry import ACTIONS, ActionDef

GROUP = "crmflow.actions"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class CustomAction:
    """An action another package adds.

    `schema` is the JSON Schema of its parameters (an object); `run` takes the action's
    `Job` (rendered `params`, `key`, `record`, `event`, the CRM) and returns an `Outcome`,
    raising `Transient` for a failure worth retrying; `dry_output` says what a dry run
    knows of its output, for `steps.<id>`; `example` is a workflow that uses it, shown in
    the reference.
    """

    name: str
    doc: str
    schema: dict[str, Any]
    run: Callable[[Any], Any]
    dry_output: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    example: str | None = None  # a workflow using it, for the reference


@cache
def load() -> tuple[str, ...]:
    """Register every installed plugin action (once); their names."""
    from importlib.metadata import entry_points

    names = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        where = f"{GROUP} entry point {point.name!r} ({point.value})"
        try:
            action = point.load()
        except Exception as exc:  # a plugin's import error is its own, any kind
            raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
        _check(action, where)
        if action.name in ACTIONS:
            raise ConfigError(f"{where}: the action {action.name!r} already exists")
        ACTIONS.add(action.name, _definition(action))
        names.append(action.name)
    return tuple(names)


def _check(action: Any, where: str) -> None:
    if not isinstance(action, CustomAction):
        raise ConfigError(f"{where} is not a crmflow.plugins.CustomAction")
    if not _NAME.fullmatch(action.name):
        raise ConfigError(f"{where}: {action.name!r} is not an action name (a-z, 0-9, _)")
    if not isinstance(action.schema, dict) or action.schema.get("type") != "object":
        raise ConfigError(f"{where}: its schema must describe an object of parameters")
    if not callable(action.run):
        raise ConfigError(f"{where}: run is not callable")


def _definition(action: CustomAction) -> ActionDef:
    dry = action.dry_output
    return ActionDef(
        action.name,
        action.doc,
        action.schema,
        dry_output=(lambda params, rng: dry(params)) if dry else (lambda params, rng: {}),
        run=action.run,
        example=action.example,
    )
