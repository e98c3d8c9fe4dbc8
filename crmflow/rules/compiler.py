"""Compile validated workflow documents into Workflow objects, once.

Input here has passed the schema (and the checks that would make compiling fail), so
this module can trust shapes and concentrates on building fast callables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from crmflow import durations
from crmflow.errors import ConfigError
from crmflow.rules.actions import action_type, normalise_params
from crmflow.rules.conditions import ClauseTable, ConditionCompiler, value_key
from crmflow.rules.digest import DigestSpec
from crmflow.rules.registry import ACTIONS
from crmflow.rules.templates import compile_tree
from crmflow.rules.triggers import CompiledTrigger, compile_trigger
from crmflow.rules.workflow import Action, Workflow
from crmflow.rules.yamlload import Document


class Shared:
    """Equal parts of the workflows of one load (one time zone), made once: field
    clauses and their getters (ClauseTable), and triggers.

    Rule sets repeat themselves (the same trigger, `stage: won`): each repeat would
    otherwise hold objects of its own for as long as the rules are loaded. Only parts
    that nothing changes after compiling are shared.
    """

    __slots__ = ("clauses", "triggers", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.clauses = ClauseTable(tz)
        self.triggers: dict[Hashable, CompiledTrigger] = {}

    def trigger(self, spec: dict[str, Any]) -> CompiledTrigger:
        key = value_key(spec)
        if key is None:
            return compile_trigger(spec, self.tz)
        trigger = self.triggers.get(key)
        if trigger is None:
            trigger = self.triggers[key] = compile_trigger(spec, self.tz)
        return trigger


def compile_workflow(doc: Document, tz: tzinfo, shared: Shared | None = None) -> Workflow:
    """The workflow of a valid document; `shared` (one per load) shares equal parts with
    the other workflows compiled with it."""
    if shared is None:
        shared = Shared(tz)
    elif shared.tz is not tz:
        raise ValueError("shared parts serve the workflows of one time zone")
    data: dict[str, Any] = doc.data
    conditions = ConditionCompiler(tz, shared.clauses)
    actions = []
    for index, spec in enumerate(data["actions"]):
        kind = action_type(spec)
        definition = ACTIONS[kind]
        params = normalise_params(definition, spec[kind])
        if definition.prepare is not None:
            try:
                params = definition.prepare(params, Path(doc.file).parent)
            except ValueError as exc:
                raise ConfigError(str(exc), doc.locate(("actions", index, kind)), "CF227") from None
        extra: dict[str, Any] = {}
        if kind == "wait":
            extra = {
                "wait_for": durations.parse(params["for"]) if "for" in params else None,
                "until": conditions.compile(params["until"]) if "until" in params else None,
                "on_met": params.get("on_met", "continue"),
                "on_timeout": params.get("on_timeout", "continue"),
            }
        if "digest" in spec:
            try:
                extra["digest"] = DigestSpec.parse(spec["digest"])
            except ValueError as exc:
                where = doc.locate(("actions", index, "digest"))
                raise ConfigError(str(exc), where, "CF229") from None
        actions.append(
            Action(
                index=index,
                type=kind,
                definition=definition,
                params=compile_tree(params, definition.html_keys)
                if definition.templated
                else params,
                location=doc.locate(("actions", index)),
                id=spec.get("id"),
                delay=durations.parse(spec["delay"]) if "delay" in spec else None,
                within=spec.get("within"),
                condition=conditions.compile(spec["if"]) if "if" in spec else None,
                **extra,
            )
        )
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return Workflow(
        id=data["id"],
        entity=data["entity"],
        trigger=shared.trigger(data["trigger"]),
        condition=conditions.compile(data.get("conditions")),
        actions=tuple(actions),
        location=doc.locate(),
        name=data.get("name", ""),
        enabled=data.get("enabled", True),
        cooldown=durations.parse(data["cooldown"]) if "cooldown" in data else None,
        limit=(
            (data["limit"]["max"], durations.parse(data["limit"].get("per", "1h")))
            if "limit" in data
            else None
        ),
        run_as=data.get("run_as"),
        mode=data.get("mode", "parallel"),
        max_runs=data.get("max_runs"),
        version=digest[:16],
    )
