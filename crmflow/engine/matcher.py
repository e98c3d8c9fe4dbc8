"""Which workflows of one (entity, event) an event triggers, with work shared across them.

The evaluator's closures check one workflow at a time. When only the answer "which
workflows match" is wanted (the library's `Evaluator.matching`, the daemon's backfill
preview), the workflows of a bucket are compiled together into Python functions:

- each field the bucket reads is read once per event, numbers are recognised once,
  dates are parsed to instants once;
- a clause that costs a call (a regex, a list membership with odd values, a nested
  path) and appears in several workflows runs at most once per event;
- equality on one field (`stage: won`, `stage: {changed_to: won}`) is dispatched
  through a dictionary: an event with `stage` "lost" never looks at the workflows that
  need "won".

Values from workflow files never become source text: every operand, field name and
helper is bound in the function's namespace under a generated name (`k3`, `c7`), so the
generated code contains only names we made and operators we chose. CRM data is never
compiled at all. Anything without an inline form calls the clause's own compiled check,
so the answers are those of `Condition.check` by construction; a property test holds
both to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from crmflow import durations
from crmflow.engine.events import Event
from crmflow.rules.conditions import ALWAYS, AllOf, AnyOf, Condition, Facts, FieldClause, Not
from crmflow.rules.workflow import Workflow
from crmflow.timeutil import to_instant
from crmflow.values import as_temporal, is_number, same, temporal

MakeFacts = Callable[[Event, datetime], Facts]
# (event, the moment it is judged at, how to make its Facts) -> ids of matched workflows
Match = Callable[[Event, datetime, MakeFacts], list[str]]
# Generated code builds the Facts only when a clause without an inline form needs them.
FACTS = "(facts if facts is not None else (facts := make(event, now)))"

# Beyond this many generated blocks the per-value functions would repeat the workflows
# without an equality key too often; the bucket then runs undispatched.
BLOCK_BUDGET = 20_000
# Conditions nested deeper than this keep their closure (the parser has a nesting limit).
MAX_DEPTH = 40
_UNSET = object()
_FAST_NUMBERS = frozenset({int, float})
_SIMPLE = frozenset({str, int, float})


def NO_MATCH(event: Event, now: datetime, make: MakeFacts) -> list[str]:
    """The matcher of a bucket no workflow takes."""
    return []


@dataclass
class _Source:
    """Generated code for one bucket: the shared namespace and the per-event preamble."""

    tz: tzinfo
    names: dict[str, Any] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # field -> variable of its value
    numbers: dict[str, str] = field(default_factory=dict)  # field -> numeric view
    instants: dict[str, str] = field(default_factory=dict)  # field -> instant view
    previous: dict[str, str] = field(default_factory=dict)  # field -> previous value
    memo: dict[int, str] = field(default_factory=dict)  # id of a shared clause -> variable
    shared: set[int] = field(default_factory=set)  # ids of clauses several workflows use
    bounds: dict[str, str] = field(default_factory=dict)  # relative offset -> its slot
    change: bool = False

    def bind(self, value: Any, prefix: str = "c") -> str:
        """A generated name for `value` in the namespace (one per distinct object)."""
        key = id(value)
        name = self.ids.get(key)
        if name is None:
            name = f"{prefix}{len(self.names)}"
            self.names[name] = value
            self.ids[key] = name
        return name

    @staticmethod
    def _slot(table: dict[Any, str], key: Any, prefix: str) -> str:
        """The variable kept in `table` for `key`, made on first use."""
        var = table.get(key)
        if var is None:
            var = table[key] = f"{prefix}{len(table)}"
        return var

    def value(self, path: str) -> str:
        return self._slot(self.fields, path, "v")

    def number(self, path: str) -> str:
        self.value(path)
        return self._slot(self.numbers, path, "n")

    def instant(self, path: str) -> str:
        self.value(path)
        return self._slot(self.instants, path, "t")

    def old(self, path: str) -> str:
        self.change = True
        return self._slot(self.previous, path, "p")

    def memo_of(self, clause: FieldClause) -> str:
        return self._slot(self.memo, id(clause), "s")

    def preamble(self) -> list[str]:
        lines = ["r = event.record", "facts = None"]
        for path, var in self.fields.items():
            lines.append(f"{var} = r.get({self.bind(path, 'k')})")
        for path, var in self.numbers.items():
            v = self.fields[path]
            lines.append(f"{var} = {v} if (type({v}) in FAST or is_number({v})) else None")
        for var in self.instants.values():
            lines.append(f"{var} = UNSET")
        if self.change:
            lines.append("p = event.previous")
            lines.append("hc = event.event == 'updated' and p is not None")
            for path, var in self.previous.items():
                lines.append(f"{var} = p.get({self.bind(path, 'k')}) if hc else None")
        for var in self.memo.values():
            lines.append(f"{var} = UNSET")
        return lines


def _bound(src: _Source, operand: str) -> str:
    """An expression for the instant an offset such as -14d points to from `now`.

    One `FromNow` per distinct offset of the bucket; the expression reads its kept
    instant without a call while `now` stays the same.
    """
    name = src.bounds.get(operand)
    if name is None:
        name = src.bounds[operand] = f"b{len(src.bounds)}"
        src.names[name] = durations.FromNow(durations.parse(operand, signed=True), src.tz)
    return f"({name}.last[1] if {name}.last[0] is now else {name}.at(now))"


def _clause_expr(clause: FieldClause, src: _Source) -> str:
    """An inline expression for the clause, or a call of its compiled check."""
    path, op, operand = clause.path, clause.op, clause.operand
    simple = "." not in path and clause.other is None
    if simple and op in ("eq", "ne") and type(operand) is str:
        # `same(v, "x")` is `v == "x"` for the str values a CRM holds.
        v, k = src.value(path), src.bind(operand)
        return f"({v} == {k})" if op == "eq" else f"({v} != {k})"
    if simple and op in ("gt", "gte", "lt", "lte") and is_number(operand):
        n, k = src.number(path), src.bind(operand)
        # gte/lte as `not <`/`not >`: equal to the operator's three-way compare, NaN included.
        test = {"gt": f"{n} > {k}", "lt": f"{n} < {k}", "gte": f"not ({n} < {k})",
                "lte": f"not ({n} > {k})"}[op]  # fmt: skip
        return f"({n} is not None and {test})"
    if simple and op in ("in", "not_in") and all(type(x) in _SIMPLE for x in operand):
        v, k = src.value(path), src.bind(frozenset(operand))
        test = f"(type({v}) in SIMPLE and {v} in {k})"
        return test if op == "in" else f"(not {test})"
    if simple and op == "contains" and type(operand) is str:
        v, k, t = src.value(path), src.bind(operand), src.bind(clause.test)
        return f"(({k} in {v}) if type({v}) is str else {t}({v}, {FACTS}))"
    if (
        simple
        and op in ("before", "after")
        and type(operand) is str
        and temporal(operand) is None  # so an offset such as -14d (the schema allows no other)
    ):
        t = src.instant(path)
        v = src.fields[path]
        sign = "<" if op == "before" else ">"
        got = f"({t} if {t} is not UNSET else ({t} := instant({v})))"
        return f"({got} is not None and {t} {sign} {_bound(src, operand)})"
    if simple and op in ("changed_to", "changed_from") and type(operand) is str:
        v, p, k = src.value(path), src.old(path), src.bind(operand)
        if op == "changed_to":
            return f"(hc and {v} == {k} and {p} != {k})"
        return f"(hc and {p} == {k} and {v} != {k})"
    if simple and op == "changed" and type(operand) is bool:
        v, p = src.value(path), src.old(path)
        test = f"same({p}, {v})"
        return f"(hc and not {test})" if operand else f"(hc and {test})"
    # Everything else runs the clause as compiled, once per event when shared.
    call = f"{src.bind(clause.check)}({FACTS})"
    if id(clause) in src.shared:
        var = src.memo_of(clause)
        return f"({var} if {var} is not UNSET else ({var} := {call}))"
    return call


def _expr(condition: Condition, src: _Source, depth: int = 0) -> str:
    if condition is ALWAYS:
        return "True"
    if depth > MAX_DEPTH:
        return f"{src.bind(condition.check)}({FACTS})"
    if isinstance(condition, FieldClause):
        return _clause_expr(condition, src)
    if isinstance(condition, AllOf):
        return "(" + " and ".join(_expr(c, src, depth + 1) for c in condition.children) + ")"
    if isinstance(condition, AnyOf):
        return "(" + " or ".join(_expr(c, src, depth + 1) for c in condition.children) + ")"
    if isinstance(condition, Not):
        return f"(not {_expr(condition.child, src, depth + 1)})"
    return f"{src.bind(condition.check)}({FACTS})"


def _conjuncts(condition: Condition) -> Sequence[Condition]:
    if isinstance(condition, AllOf):
        return condition.children
    return (condition,)


def _key(condition: Condition) -> tuple[str, str] | None:
    """(field, value) when the condition requires the field to equal a string."""
    for part in _conjuncts(condition):
        if (
            isinstance(part, FieldClause)
            and part.op in ("eq", "changed_to")
            and type(part.operand) is str
            and "." not in part.path
            and part.other is None
        ):
            return part.path, part.operand
    return None


def _clause_key(clause: FieldClause) -> tuple[str, str, str]:
    return (clause.path, clause.op, repr(clause.operand))


def compile_bucket(workflows: Sequence[Workflow], tz: tzinfo) -> Match:
    """One function answering which of `workflows` (all taking this event) an event matches.

    Date-trigger and cooldown workflows are returned whenever their trigger takes the
    event: their answer depends on state the caller checks (`Workflow.depends_on_state`).
    """
    if not workflows:
        return NO_MATCH
    src = _Source(tz)

    def instant(value: Any) -> datetime | None:
        moment = as_temporal(value)
        return None if moment is None else to_instant(moment, tz)

    src.names.update(
        UNSET=_UNSET,
        FAST=_FAST_NUMBERS,
        SIMPLE=_SIMPLE,
        is_number=is_number,
        same=same,
        instant=instant,
    )
    # Identical clauses, told apart by what they test rather than by which workflow has
    # them, so a costly one runs once per event.
    canonical: dict[tuple[str, str, str], FieldClause] = {}
    uses: Counter[int] = Counter()
    conditions: list[Condition] = []
    for workflow in workflows:
        conditions.append(_canonical(workflow.condition, canonical, uses))
    src.shared = {key for key, n in uses.items() if n > 1}

    blocks: list[str] = []
    keys: list[tuple[str, str] | None] = []
    for workflow, condition in zip(workflows, conditions, strict=True):
        tests = []
        trigger = workflow.trigger
        if workflow.depends_on_state:
            keys.append(None)
        else:
            keys.append(_key(condition))
            if trigger.ignore_actors or trigger.fields:
                tests.append(f"{src.bind(trigger.reject)}({FACTS}) is None")
            if condition is not ALWAYS:
                tests.append(_expr(condition, src))
        append = f"out.append({src.bind(workflow.id, 'w')})"
        if tests:
            blocks.append(f"    if {' and '.join(tests)}:\n        {append}")
        else:
            blocks.append(f"    {append}")

    # Dispatch on the field most workflows pin to a string value.
    counts = Counter(k[0] for k in keys if k is not None)
    dispatch = counts.most_common(1)[0][0] if counts and counts.most_common(1)[0][1] > 1 else None
    preamble = src.preamble()
    if dispatch is None:
        return _build([("match", range(len(blocks)))], blocks, preamble, src)["match"]

    values: dict[str, list[int]] = {}
    free: list[int] = []
    for i, key in enumerate(keys):
        if key is not None and key[0] == dispatch:
            values.setdefault(key[1], []).append(i)
        else:
            free.append(i)
    if (len(values) + 1) * len(free) > BLOCK_BUDGET:
        return _build([("match", range(len(blocks)))], blocks, preamble, src)["match"]
    groups: list[tuple[str, Sequence[int]]] = [("rest", free)]
    names: dict[str, str] = {}
    for n, (value, members) in enumerate(values.items()):
        names[value] = f"on{n}"
        groups.append((f"on{n}", sorted(members + free)))
    built = _build(groups, blocks, preamble, src)
    table = {value: built[name] for value, name in names.items()}
    rest = built["rest"]
    field_name = dispatch

    def match(event: Event, now: datetime, make: MakeFacts) -> list[str]:
        value = event.record.get(field_name)
        if type(value) is str:
            return table.get(value, rest)(event, now, make)
        return rest(event, now, make)

    # For inspection (tests, `crmflow eval --explain` some day): what the bucket turned into.
    match.dispatch = field_name  # type: ignore[attr-defined]
    match.table = table  # type: ignore[attr-defined]
    return match


def _canonical(
    condition: Condition,
    seen: dict[tuple[str, str, str], FieldClause],
    uses: Counter[int],
) -> Condition:
    """The condition with each clause replaced by the first identical one of the bucket."""
    if isinstance(condition, FieldClause):
        key = _clause_key(condition)
        first = seen.setdefault(key, condition)
        uses[id(first)] += 1
        return first
    if isinstance(condition, AllOf):
        return AllOf(tuple(_canonical(c, seen, uses) for c in condition.children))
    if isinstance(condition, AnyOf):
        return AnyOf(tuple(_canonical(c, seen, uses) for c in condition.children))
    if isinstance(condition, Not):
        return Not(_canonical(condition.child, seen, uses))
    return condition


def _build(
    groups: Sequence[tuple[str, Sequence[int]]],
    blocks: list[str],
    preamble: list[str],
    src: _Source,
) -> dict[str, Match]:
    lines: list[str] = []
    for name, members in groups:
        lines.append(f"def {name}(event, now, make):")
        lines.extend(f"    {line}" for line in preamble)
        lines.append("    out = []")
        lines.extend(blocks[i] for i in members)
        lines.append("    return out")
    namespace = src.names
    exec(compile("\n".join(lines), "<crmflow matcher>", "exec"), namespace)
    return {name: namespace[name] for name, _ in groups}
