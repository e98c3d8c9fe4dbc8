"""Conditions compiled once into callables that can also explain themselves.

`check(facts)` is the fast path the evaluator runs for every event; `explain(facts)`
re-runs a clause to say which part did not hold and what value it saw, for plan
reasons, `eval --explain` and the history.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from crmflow.rules.operators import OperatorDef
from crmflow.rules.registry import OPERATORS
from crmflow.values import display

Getter = Callable[[Any, "Facts"], Any]


class Related(Protocol):
    """Related records the event does not embed, read from the CRM (one per event)."""

    def value(
        self, entity: str, prefix: tuple[str, ...], record: dict[str, Any], rest: tuple[str, ...]
    ) -> Any:
        """The value at `rest` from `record`, reached from `entity` along `prefix`."""

    def relation_entity(self, entity: str, name: str) -> str | None:
        """The entity a relation of `entity` leads to, or None when `name` is no relation."""

    def load(self, entity: str, record: dict[str, Any], name: str) -> Any:
        """The record (or list of records) the relation `name` of `record` leads to."""


@dataclass(slots=True)
class Facts:
    """What conditions see: one event at one moment."""

    entity: str
    event: str
    record: dict[str, Any]
    previous: dict[str, Any] | None
    now: datetime
    tz: tzinfo
    actor: Any = None
    related: Related | None = None
    # Results of change clauses kept from trigger time (uid -> result), for delayed
    # actions that re-check conditions against the record as it is at fire time.
    kept: dict[int, bool] | None = None
    # The chain of crmflow's writes that caused this change, if any.
    chain: list[Any] | None = None

    @property
    def has_change(self) -> bool:
        return self.event == "updated" and self.previous is not None


@dataclass(frozen=True, slots=True)
class Trace:
    ok: bool
    text: str
    children: tuple[Trace, ...] = ()

    def reason(self) -> str:
        """The shortest account of why this clause failed."""
        if self.ok or not self.children:
            return self.text
        failing = [c for c in self.children if not c.ok]
        if self.text == "all":
            return failing[0].reason()
        if self.text == "any":
            return "any: none held (" + "; ".join(c.reason() for c in self.children) + ")"
        return self.text

    def lines(self, depth: int = 0) -> list[tuple[int, bool, str]]:
        rows = [(depth, self.ok, self.text)]
        for child in self.children:
            rows.extend(child.lines(depth + 1))
        return rows


class Condition:
    """A compiled condition node.

    Slotted, as are its kinds: a rule set holds thousands of nodes. `__dict__` stays
    available (made only when something sets an attribute of its own, such as a test's
    wrapper around `reason`), so that costs one pointer a node.
    """

    __slots__ = ("__dict__", "check")

    check: Callable[[Facts], bool]

    def explain(self, facts: Facts) -> Trace:  # pragma: no cover - abstract
        raise NotImplementedError

    def reason(self, facts: Facts) -> str:
        """Why the condition does not hold: `explain(facts).reason()`, often cheaper."""
        return self.explain(facts).reason()

    def change_clauses(self) -> list[FieldClause]:
        return []


def make_getter(path: str) -> Getter:
    """A function reading `path` (dotted for nested or related records) from a record."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        name = parts[0]

        def get_one(record: Any, facts: Facts) -> Any:
            return record.get(name) if type(record) is dict else None

        return get_one

    def get_path(record: Any, facts: Facts) -> Any:
        current = record
        for i, part in enumerate(parts):
            if type(current) is dict:
                if part in current:
                    current = current[part]
                    continue
                if facts.related is not None:
                    return facts.related.value(facts.entity, parts[:i], current, parts[i:])
                return None
            if type(current) is list:
                rest = ".".join(parts[i:])
                getter = make_getter(rest)
                return [getter(item, facts) for item in current]
            return None
        return current

    return get_path


@dataclass(eq=False, slots=True)
class FieldClause(Condition):
    """One test of one field. Equal clauses of one load are one object (ClauseTable)."""

    path: str
    op: str
    operand: Any
    definition: OperatorDef
    # A change clause's number in its workflow: its result is kept by that number for
    # delayed actions (Facts.kept, stored with pending actions). 0 for a value clause,
    # which keeps nothing, so that equal value clauses are equal wherever they stand.
    uid: int
    getter: Getter = field(repr=False)
    test: Any = field(repr=False)
    other: Getter | None = field(default=None, repr=False)  # `{field: ...}` operand
    _label: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        getter, test = self.getter, self.test
        if self.definition.kind == "value":
            if "." not in self.path and self.other is None:
                # The common case, without the getter's call: a field of the record itself.
                name = self.path
                self.check = lambda facts: test(facts.record.get(name), facts)
            else:
                self.check = lambda facts: test(getter(facts.record, facts), facts)
            return
        uid = self.uid

        def check_change(facts: Facts) -> bool:
            if facts.kept is not None and uid in facts.kept:
                return facts.kept[uid]
            if not facts.has_change:
                return False
            return test(getter(facts.previous, facts), getter(facts.record, facts))

        self.check = check_change

    def reason(self, facts: Facts) -> str:
        if self.definition.kind == "value":
            # explain's text without its Trace or a second check: plans of many workflows
            # carry one reason each.
            seen = f"was {display(self.getter(facts.record, facts))}"
            if self.other is not None:
                seen += f" vs {display(self.other(facts.record, facts))}"
            return f"{self.label}: {seen}"
        return self.explain(facts).text

    @property
    def label(self) -> str:
        # Worded at first use and kept: reasons name it for every event the clause fails.
        label = self._label
        if label is None:
            if self.other is not None:
                label = f"{self.path} {self.op} {self.operand['field']}"
            else:
                label = f"{self.path} {self.op} {display(self.operand)}"
            self._label = label
        return label

    def explain(self, facts: Facts) -> Trace:
        ok = self.check(facts)
        if self.definition.kind == "value":
            seen = f"was {display(self.getter(facts.record, facts))}"
            if self.other is not None:
                seen += f" vs {display(self.other(facts.record, facts))}"
            return Trace(ok, f"{self.label}: {seen}")
        if facts.kept is not None and self.uid in facts.kept:
            return Trace(ok, f"{self.label}: {'held' if ok else 'did not hold'} at trigger time")
        if not facts.has_change:
            why = "no previous values" if facts.event == "updated" else f"a {facts.event} event"
            return Trace(ok, f"{self.label}: {why}")
        old = self.getter(facts.previous, facts)
        new = self.getter(facts.record, facts)
        if ok or old != new:
            seen = f"{display(old)} -> {display(new)}"
            if old == new:
                seen = f"was {display(new)}, unchanged"
            return Trace(ok, f"{self.label}: {seen}")
        return Trace(ok, f"{self.label}: was {display(new)}, unchanged")

    def change_clauses(self) -> list[FieldClause]:
        return [self] if self.definition.kind == "change" else []


@dataclass(eq=False, slots=True)
class AllOf(Condition):
    children: tuple[Condition, ...]

    def __post_init__(self) -> None:
        checks = tuple(c.check for c in self.children)
        if len(checks) == 1:
            self.check = checks[0]
        elif len(checks) == 2:
            a, b = checks
            self.check = lambda facts: a(facts) and b(facts)
        else:
            # A plain loop: all() over a generator costs a frame per event here.
            def check_all(facts: Facts) -> bool:
                for check in checks:  # noqa: SIM110
                    if not check(facts):
                        return False
                return True

            self.check = check_all

    def explain(self, facts: Facts) -> Trace:
        traces = tuple(c.explain(facts) for c in self.children)
        return Trace(all(t.ok for t in traces), "all", traces)

    def reason(self, facts: Facts) -> str:
        # What Trace.reason says of "all": the first failing child's reason, without
        # explaining the children before and after it.
        for child in self.children:
            if not child.check(facts):
                return child.reason(facts)
        return "all"

    def change_clauses(self) -> list[FieldClause]:
        return [c for child in self.children for c in child.change_clauses()]


@dataclass(eq=False, slots=True)
class AnyOf(Condition):
    children: tuple[Condition, ...]

    def __post_init__(self) -> None:
        checks = tuple(c.check for c in self.children)

        def check_any(facts: Facts) -> bool:
            for check in checks:  # noqa: SIM110
                if check(facts):
                    return True
            return False

        self.check = check_any

    def explain(self, facts: Facts) -> Trace:
        traces = tuple(c.explain(facts) for c in self.children)
        return Trace(any(t.ok for t in traces), "any", traces)

    def change_clauses(self) -> list[FieldClause]:
        return [c for child in self.children for c in child.change_clauses()]


@dataclass(eq=False, slots=True)
class Not(Condition):
    child: Condition

    def __post_init__(self) -> None:
        inner = self.child.check
        self.check = lambda facts: not inner(facts)

    def explain(self, facts: Facts) -> Trace:
        inner = self.child.explain(facts)
        return Trace(
            not inner.ok, f"not ({inner.text if not inner.children else inner.reason()})", (inner,)
        )

    def change_clauses(self) -> list[FieldClause]:
        return self.child.change_clauses()


class Always(Condition):
    __slots__ = ()

    def __init__(self) -> None:
        self.check = lambda facts: True

    def explain(self, facts: Facts) -> Trace:
        return Trace(True, "no conditions")


ALWAYS = Always()


class ClauseTable:
    """Getters and field clauses made once for all the workflows of one load.

    Most clauses recur across a rule set (`stage: won`, the same field read by many
    workflows): each equal clause is one object, with one getter and one compiled test.
    A clause's parts depend only on its path, operator, operand, time zone and (for a
    change clause) uid, so sharing it changes no answer. The table lives as long as the
    load that fills it: what it keeps alive is what the compiled rules hold anyway.
    """

    __slots__ = ("clauses", "getters", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.getters: dict[str, Getter] = {}
        self.clauses: dict[Hashable, FieldClause] = {}


class ConditionCompiler:
    """Turns condition mappings (already schema-valid) into Condition trees.

    One per workflow (the uids of change clauses count within it); a `table` shared by
    the compilers of one load lets equal clauses of its workflows be one object.
    """

    def __init__(self, tz: tzinfo, table: ClauseTable | None = None) -> None:
        if table is None:
            table = ClauseTable(tz)
        elif table.tz is not tz:
            raise ValueError("a clause table serves the compilers of one time zone")
        self.tz = tz
        self._uid = 0
        self._table = table
        self._getters = table.getters

    def compile(self, spec: Any) -> Condition:
        if spec is None:
            return ALWAYS
        if isinstance(spec, list):
            return self._all([self.compile(item) for item in spec])
        parts: list[Condition] = []
        for key, value in spec.items():
            if key == "all":
                parts.append(self._all([self.compile(item) for item in value]))
            elif key == "any":
                parts.append(AnyOf(tuple(self.compile(item) for item in value)))
            elif key == "not":
                parts.append(Not(self.compile(value)))
            elif isinstance(value, dict):
                parts.extend(self._field(key, op, operand) for op, operand in value.items())
            else:
                parts.append(self._field(key, "eq", value))
        return self._all(parts)

    def _all(self, parts: list[Condition]) -> Condition:
        if not parts:
            return ALWAYS
        if len(parts) == 1:
            return parts[0]
        return AllOf(tuple(parts))

    def _getter(self, path: str) -> Getter:
        getter = self._getters.get(path)
        if getter is None:
            getter = self._getters[path] = make_getter(path)
        return getter

    def _field(self, path: str, op: str, operand: Any) -> FieldClause:
        definition: OperatorDef = OPERATORS[op]
        # Every clause takes a number, as it always has: the uids of change clauses are
        # stored with pending actions, so they must not move.
        self._uid += 1
        uid = self._uid if definition.kind == "change" else 0
        value = value_key(operand)
        if value is None:
            return self._make(path, op, operand, definition, uid)
        key = (path, op, value, uid)
        clause = self._table.clauses.get(key)
        if clause is None:
            clause = self._table.clauses[key] = self._make(path, op, operand, definition, uid)
        return clause

    def _make(
        self, path: str, op: str, operand: Any, definition: OperatorDef, uid: int
    ) -> FieldClause:
        getter = self._getter(path)
        if is_field_ref(operand) and definition.pair is not None:
            other = self._getter(operand["field"])
            pair, tz = definition.pair, self.tz
            test = lambda value, facts: pair(value, other(facts.record, facts), tz)  # noqa: E731
            return FieldClause(path, op, operand, definition, uid, getter, test, other)
        return FieldClause(
            path, op, operand, definition, uid, getter, definition.build(operand, self.tz)
        )


def value_key(value: Any) -> Hashable | None:
    """A key equal for two values exactly when they are the same data; None for a value
    it cannot vouch for (no sharing then).

    Types are part of it (1, 1.0 and True are equal in Python, not in a workflow), floats
    go by repr (-0.0 == 0.0, yet `display` tells them apart), and order counts (mappings
    are worded in their order). A nan has none: inside a list or set, Python finds a nan
    by identity, so two nans are not interchangeable.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return (kind, value)
    if kind is float:
        return None if value != value else (kind, repr(value))
    if kind is list or kind is tuple:
        items = [value_key(item) for item in value]
        return None if None in items else (kind, tuple(items))
    if kind is dict:
        pairs = [(value_key(k), value_key(v)) for k, v in value.items()]
        return None if any(None in pair for pair in pairs) else (kind, tuple(pairs))
    return None


def is_field_ref(operand: Any) -> bool:
    return type(operand) is dict and len(operand) == 1 and "field" in operand


def iter_field_clauses(
    spec: Any, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], str, str, Any]]:
    """Every (yaml path, field path, operator, operand) in a raw condition, for lint."""
    found: list[tuple[tuple[str | int, ...], str, str, Any]] = []
    if isinstance(spec, list):
        for i, item in enumerate(spec):
            found.extend(iter_field_clauses(item, (*path, i)))
        return found
    if not isinstance(spec, dict):
        return found
    for key, value in spec.items():
        if key in ("all", "any") and isinstance(value, list):
            for i, item in enumerate(value):
                found.extend(iter_field_clauses(item, (*path, key, i)))
        elif key == "not":
            found.extend(iter_field_clauses(value, (*path, key)))
        elif isinstance(value, dict):
            found.extend(((*path, key, op), key, op, operand) for op, operand in value.items())
        else:
            found.append(((*path, key), key, "eq", value))
    return found
