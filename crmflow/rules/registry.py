"""The one registry of trigger kinds, condition operators and action types.

Each kind registers itself here when its module (operators, triggers, actions) is
imported; the compiler looks names up here and the JSON Schema is generated from here, so
code and schema cannot drift apart. This module imports none of those fillers (only their
types, for the checker): `crmflow.rules.schema.vocabulary()` imports them all, as Cloud
Custodian keeps `c7n/registry.py` pure and loads resources elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from random import Random

    from crmflow.rules.triggers import CompiledTrigger

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> definition, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def add(self, name: str, item: T) -> T:
        return self.register(name)(item)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())

    def names(self) -> list[str]:
        return list(self._items)


@dataclass(frozen=True)
class OperatorDef:
    """A condition operator: its schema, and how to build its test from an operand."""

    name: str
    doc: str
    schema: dict[str, Any]
    kind: Literal["value", "change"]
    build: Callable[[Any, tzinfo], Any]
    ordering: bool = False  # false on null and mismatched types; lint checks field types
    # Compares two values of the record when the operand is `{field: other_field}`.
    pair: Callable[[Any, Any, tzinfo], bool] | None = None


@dataclass(frozen=True)
class TriggerDef:
    """A trigger kind: the keys it accepts in `trigger`, and how to compile them."""

    key: str
    doc: str
    properties: dict[str, dict[str, Any]]
    compile: Callable[[dict[str, Any], tzinfo], CompiledTrigger]


@dataclass(frozen=True)
class ActionDef:
    """An action type: its keys, and what a dry run knows of its outcome."""

    name: str
    doc: str
    schema: dict[str, Any]
    # Parameters rendered as templates; False for actions whose keys are structure
    # (a wait's duration and condition).
    templated: bool = True
    # A short form (`set_stage: won`) expands into this key.
    shorthand: str | None = None
    # What a dry run can say of the action's output, for `steps.<id>`.
    dry_output: Callable[[dict[str, Any], Random], dict[str, Any]] = field(
        default=lambda params, rng: {}
    )
    changes_records: bool = False
    # Keys holding HTML: their templates escape what they insert.
    html_keys: frozenset[str] = frozenset()
    # Parameters completed from files beside the workflow when it is compiled (a
    # document's template); gets the parameters and the workflow file's folder.
    prepare: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
    # How an action from another package reaches the world (crmflow.rules.plugins); the
    # built-in ones have theirs in crmflow.engine.effects.by_type.
    run: Callable[[Any], Any] | None = None
    example: str | None = None  # a plugin's own example for the reference


# Filled by crmflow.rules.operators, crmflow.rules.triggers and crmflow.rules.actions on import.
OPERATORS: Registry[OperatorDef] = Registry("operator")
TRIGGERS: Registry[TriggerDef] = Registry("trigger")
ACTIONS: Registry[ActionDef] = Registry("action")
