"""Which workflows of one (entity, event) an event triggers, with work shared across them.

The evaluator's closures check one workflow at a time. When only the answer "which
workflows match" is wanted (the library's `Evaluator.matching`, the evaluation of
`crmflow eval`, the daemon), the workflows of a bucket are compiled together into Python
functions:

- a field is read when a clause first needs it, and then once per event; its instant
  (for `before`/`after`) is worked out at first use and kept;
- the clauses of a workflow run cheapest first (equality and membership before numbers,
  substrings, dates, and calls), and a workflow stops at its first failing clause;
- a clause that costs a call (a regex, a list membership with odd values, a related
  record) and appears in several workflows runs at most once per event;
- equality on the field that splits the bucket best (`stage: won`, `country: DE`,
  `stage: {changed_to: won}`) is dispatched through a dictionary: an event with `stage`
  "lost" never looks at the workflows that need "won";
- change clauses of a bucket of created or deleted events are false without a look.

Values from workflow files never become source text: every operand, field name and
helper is bound in the function's namespace under a generated name (`k3`, `c7`), so the
generated code contains only names we made and operators we chose. CRM data is never
compiled at all. Anything without an inline form calls the clause's own compiled check,
so the answers are those of `Condition.check` by construction; a property test holds
both to it. Reordering the clauses of `all` and `any` is safe because checks are pure and
never raise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple, Protocol

from crmflow import durations
from crmflow.engine.events import Event
from crmflow.rules.conditions import ALWAYS, AllOf, AnyOf, Condition, Facts, FieldClause, Not
from crmflow.rules.ruleset import Entry
from crmflow.rules.workflow import Workflow
from crmflow.timeutil import parse_temporal, to_instant
from crmflow.values import as_temporal, display, is_number, same, temporal

MakeFacts = Callable[[Any, datetime], Facts]
# (record, previous, the event, the moment it is judged at, how to make its Facts) -> ids
# of matched workflows. The event (an Event, or the mapping it was decoded from) is only
# handed to `make`: the record and previous values come apart, so a caller holding the
# raw mapping needs no Event.
Match = Callable[[dict[str, Any], Any, Any, datetime, MakeFacts], list[str]]
# Generated code builds the Facts only when a clause without an inline form needs them.
FACTS = "(facts if facts is not None else (facts := make(event, now)))"

# Beyond this many generated blocks the per-value functions would repeat the workflows
# without an equality key too often; the bucket then runs undispatched.
BLOCK_BUDGET = 20_000
# Conditions nested deeper than this keep their closure (the parser has a nesting limit).
MAX_DEPTH = 40
# ISO strings kept with their instants per time zone; forgotten all at once when full
# (a stream of distinct timestamps pays one parse each, never an eviction's bookkeeping).
INSTANTS_KEPT = 65_536
_UNSET = object()
# A path the record alone does not answer (a relation to load, a list to map over).
_DEFER = object()
_FAST_NUMBERS = frozenset({int, float})
_SIMPLE = frozenset({str, int, float})
# Values whose type tells them apart as dictionary keys (1 and 1.0 and True do not).
_KEYED = frozenset({str, int})
# Where generated text reads a field for the first time in a clause: `\0v3\0`.
_FIRST_USE = re.compile("\0(v[0-9]+)\0")

# What a clause costs, to run the cheap ones first (a failing cheap one spares the rest).
COST_CONSTANT, COST_EQUAL, COST_NUMBER, COST_TEXT, COST_DATE, COST_CALL = 0, 1, 2, 3, 4, 10


def NO_MATCH(
    record: dict[str, Any], previous: Any, event: Any, now: datetime, make: MakeFacts
) -> list[str]:
    """The matcher of a bucket no workflow takes."""
    return []


def dig(record: Any, parts: tuple[str, ...]) -> Any:
    """The value at a dotted path through the objects the record embeds, or _DEFER.

    _DEFER where the clause's own getter may answer otherwise (a missing key a related
    record may hold, a list it maps over); None where the getter says None.
    """
    current = record
    for part in parts:
        if type(current) is dict:
            if part in current:
                current = current[part]
                continue
            return _DEFER
        if type(current) is list:
            return _DEFER
        return None
    return current


class Instants:
    """Instants of field values in one time zone, ISO strings parsed once while they repeat."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.kept: dict[str, datetime | None] = {}

    def __call__(self, value: Any) -> datetime | None:
        if type(value) is str:
            moment = self.kept.get(value, _UNSET)
            if moment is _UNSET:
                parsed = parse_temporal(value)
                moment = None if parsed is None else to_instant(parsed, self.tz)
                if len(self.kept) >= INSTANTS_KEPT:
                    self.kept.clear()
                self.kept[value] = moment
            return moment  # type: ignore[return-value]
        parsed = as_temporal(value)
        return None if parsed is None else to_instant(parsed, self.tz)


_INSTANTS: dict[tzinfo, Instants] = {}


def instants_in(tz: tzinfo) -> Instants:
    """The instants kept for `tz`, shared by every bucket judging in it."""
    found = _INSTANTS.get(tz)
    if found is None:
        found = _INSTANTS[tz] = Instants(tz)
    return found


class _Test(NamedTuple):
    """Generated text of a condition, the field it reads first (if any), and its cost."""

    text: str
    lead: str | None
    cost: int


@dataclass
class _Source:
    """Generated code for one bucket: the shared namespace and what the functions read."""

    tz: tzinfo
    kind: str | None  # the bucket's event, when known
    names: dict[str, Any] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # path -> variable of its value
    reads: dict[str, str] = field(default_factory=dict)  # variable -> how it is read
    instants: dict[str, str] = field(default_factory=dict)  # path -> instant variable
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

    def value(self, path: str) -> str:
        """The variable of the field's value (read at its first use in each function)."""
        var = self.fields.get(path)
        if var is None:
            var = self.fields[path] = f"v{len(self.fields)}"
            parts = tuple(path.split("."))
            if len(parts) == 2:
                # A field of an embedded object, without a call when it is there.
                a, b, k = self.bind(parts[0], "k"), self.bind(parts[1], "k"), self.bind(parts, "k")
                self.reads[var] = (
                    f"(o[{b}] if type(o := r.get({a})) is dict and {b} in o else dig(r, {k}))"
                )
            elif len(parts) > 2:
                self.reads[var] = f"dig(r, {self.bind(parts, 'k')})"
            else:
                self.reads[var] = f"r.get({self.bind(path, 'k')})"
        return var

    def instant(self, path: str) -> str:
        var = self.instants.get(path)
        if var is None:
            var = self.instants[path] = f"t{len(self.instants)}"
        return var

    def memo_of(self, clause: FieldClause) -> str:
        var = self.memo.get(id(clause))
        if var is None:
            var = self.memo[id(clause)] = f"s{len(self.memo)}"
        return var

    @property
    def never_changes(self) -> bool:
        """Whether change clauses are false for every event of the bucket."""
        return self.kind is not None and self.kind != "updated"


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


def _call(clause: Condition, src: _Source) -> str:
    """A call of the clause's compiled check, once per event when several workflows share it."""
    call = f"{src.bind(clause.check)}({FACTS})"
    if isinstance(clause, FieldClause) and id(clause) in src.shared:
        var = src.memo_of(clause)
        return f"({var} if {var} is not UNSET else ({var} := {call}))"
    return call


def _value_test(clause: FieldClause, src: _Source, first: str, v: str) -> _Test | None:
    """An inline test of a value operator on `v`, whose first read is written `first`.

    `o` is the scratch variable of generated code: set and read within one expression.
    """
    op, operand = clause.op, clause.operand
    kind = type(operand)
    if op in ("eq", "ne") and kind is str:
        # `same(v, "x")` is `v == "x"` for the str values a CRM holds.
        return _Test(f"({first} {'==' if op == 'eq' else '!='} {src.bind(operand)})", v, COST_EQUAL)
    if op in ("eq", "ne") and (operand is None or kind is bool):
        # None, True and False are singletons: `same` is identity for them.
        return _Test(f"({first} {'is' if op == 'eq' else 'is not'} {operand})", v, COST_EQUAL)
    if op in ("gt", "gte", "lt", "lte") and is_number(operand):
        k = src.bind(operand)
        # gte/lte as `not <`/`not >`: equal to the operator's three-way compare, NaN included.
        test = {"gt": f"{v} > {k}", "lt": f"{v} < {k}", "gte": f"not ({v} < {k})",
                "lte": f"not ({v} > {k})"}[op]  # fmt: skip
        return _Test(f"((type({first}) in FAST or is_number({v})) and {test})", v, COST_NUMBER)
    if op in ("in", "not_in") and all(type(x) in _SIMPLE for x in operand):
        k = src.bind(frozenset(operand))
        test = f"(type({first}) in SIMPLE and {v} in {k})"
        return _Test(test if op == "in" else f"(not {test})", v, COST_EQUAL)
    if op == "contains" and kind is str:
        k, t = src.bind(operand), src.bind(clause.test)
        return _Test(f"(({k} in {v}) if type({first}) is str else {t}({v}, {FACTS}))", v, COST_TEXT)
    if op in ("before", "after") and kind is str and temporal(operand) is None:
        # An offset such as -14d (the schema allows no other string that is not a date).
        t = src.instant(clause.path)
        sign = "<" if op == "before" else ">"
        # An aware datetime is its own instant; anything else goes through `instant`.
        got = (
            f"({v} if type({first}) is DATETIME and {v}.tzinfo is not None else o "
            f"if type({v}) is str and (o := KEPT.get({v})) is not None else instant({v}))"
        )
        moment = f"({t} if {t} is not UNSET else ({t} := {got}))"
        return _Test(
            f"({moment} is not None and {t} {sign} {_bound(src, operand)})", None, COST_DATE
        )
    return None


def _change_test(clause: FieldClause, src: _Source, first: str, v: str) -> _Test | None:
    """An inline test of a change operator (the field's old value is read where used)."""
    op, operand = clause.op, clause.operand
    if src.never_changes and op in ("changed", "changed_to", "changed_from"):
        return _Test("False", None, COST_CONSTANT)
    src.change = True
    old = f"p.get({src.bind(clause.path, 'k')})"
    if op in ("changed_to", "changed_from") and type(operand) is str:
        k = src.bind(operand)
        if op == "changed_to":
            return _Test(f"({first} == {k} and hc and {old} != {k})", v, COST_EQUAL)
        return _Test(f"({first} != {k} and hc and {old} == {k})", v, COST_EQUAL)
    if op == "changed" and type(operand) is bool:
        test = f"same({old}, {first})"
        return _Test(f"(hc and not {test})" if operand else f"(hc and {test})", None, COST_EQUAL)
    return None


def _clause(clause: FieldClause, src: _Source) -> _Test:
    """An inline test for the clause, or a call of its compiled check."""
    if clause.other is None and (clause.definition.kind == "value" or "." not in clause.path):
        v = src.value(clause.path)
        if clause.definition.kind == "change":
            found = _change_test(clause, src, f"\0{v}\0", v)
        elif "." not in clause.path:
            found = _value_test(clause, src, f"\0{v}\0", v)
        else:
            # A path through embedded objects: inline when the record answers it.
            inner = _value_test(clause, src, v, v)
            found = inner and _Test(
                f"({_call(clause, src)} if \0{v}\0 is DEFER else {inner.text})",
                v,
                inner.cost + 1,
            )
        if found is not None:
            return found
    return _Test(_call(clause, src), None, COST_CALL)


def _expr(condition: Condition, src: _Source, depth: int = 0) -> _Test:
    if condition is ALWAYS:
        return _Test("True", None, COST_CONSTANT)
    if depth > MAX_DEPTH:
        return _Test(f"{src.bind(condition.check)}({FACTS})", None, COST_CALL)
    if isinstance(condition, FieldClause):
        return _clause(condition, src)
    if isinstance(condition, (AllOf, AnyOf)):
        parts = _ordered([_expr(c, src, depth + 1) for c in condition.children])
        joint = " and " if isinstance(condition, AllOf) else " or "
        text = "(" + joint.join(p.text for p in parts) + ")"
        return _Test(text, parts[0].lead, sum(p.cost for p in parts))
    if isinstance(condition, Not):
        inner = _expr(condition.child, src, depth + 1)
        return _Test(f"(not {inner.text})", inner.lead, inner.cost)
    return _Test(f"{src.bind(condition.check)}({FACTS})", None, COST_CALL)


def _ordered(tests: list[_Test]) -> list[_Test]:
    """Cheapest first, keeping the written order among equals."""
    return sorted(tests, key=lambda t: t.cost)


def _conjuncts(condition: Condition) -> Sequence[Condition]:
    if isinstance(condition, AllOf):
        return condition.children
    return (condition,)


def _keys(condition: Condition) -> dict[str, str]:
    """field -> value for each field the condition requires to equal a string."""
    keys: dict[str, str] = {}
    for part in _conjuncts(condition):
        if (
            isinstance(part, FieldClause)
            and part.op in ("eq", "changed_to")
            and type(part.operand) is str
            and "." not in part.path
            and part.other is None
        ):
            keys.setdefault(part.path, part.operand)
    return keys


def _clause_key(clause: FieldClause) -> tuple[str, str, str]:
    return (clause.path, clause.op, repr(clause.operand))


@dataclass
class _Block:
    """One workflow's test in generated code: its conjuncts, cheapest first."""

    tests: list[_Test]
    append: str
    never: bool = False  # a conjunct is false for every event of the bucket


def compile_bucket(workflows: Sequence[Workflow], tz: tzinfo, kind: str | None = None) -> Match:
    """One function answering which of `workflows` (all taking this event) an event matches.

    `kind` is the event of the bucket (None when unknown): change clauses of a created or
    deleted bucket are false without a look. Date-trigger and cooldown workflows are
    returned whenever their trigger takes the event: their answer depends on state the
    caller checks (`Workflow.depends_on_state`).
    """
    if not workflows:
        return NO_MATCH
    src = _namespace(tz, kind)
    # Identical clauses, told apart by what they test rather than by which workflow has
    # them, so a costly one runs once per event.
    canonical: dict[tuple[str, str, str], FieldClause] = {}
    uses: Counter[int] = Counter()
    conditions = [_canonical(w.condition, canonical, uses) for w in workflows]
    src.shared = {key for key, n in uses.items() if n > 1}

    blocks: list[_Block] = []
    keys: list[dict[str, str]] = []
    for workflow, condition in zip(workflows, conditions, strict=True):
        block = _Block([], f"out.append({src.bind(workflow.id, 'w')})")
        keys.append({} if workflow.depends_on_state else _keys(condition))
        if not workflow.depends_on_state:
            if condition is not ALWAYS:
                block.tests = _ordered([_expr(c, src) for c in _conjuncts(condition)])
                block.never = any(t.text == "False" for t in block.tests)
            trigger = workflow.trigger
            if trigger.ignore_actors or trigger.fields:
                # Last: the trigger's own check is a call, the clauses mostly are not.
                reject = f"{src.bind(trigger.reject)}({FACTS}) is None"
                block.tests.append(_Test(reject, None, COST_CALL))
        blocks.append(block)

    dispatch = _dispatch_field(keys)
    if dispatch is None:
        return _build([("match", range(len(blocks)), None)], blocks, src)["match"]
    values: dict[str, list[int]] = {}
    free: list[int] = []
    for i, key in enumerate(keys):
        if dispatch in key:
            values.setdefault(key[dispatch], []).append(i)
        else:
            free.append(i)
    if (len(values) + 1) * len(free) > BLOCK_BUDGET:
        return _build([("match", range(len(blocks)), None)], blocks, src)["match"]
    var = src.value(dispatch)
    groups: list[tuple[str, Sequence[int], str | None]] = [("rest", free, var)]
    names: dict[str, str] = {}
    for n, (value, members) in enumerate(values.items()):
        names[value] = f"on{n}"
        groups.append((f"on{n}", sorted(members + free), var))
    built = _build(groups, blocks, src)
    return _dispatcher(
        dispatch, {value: built[name] for value, name in names.items()}, built["rest"]
    )


def _namespace(tz: tzinfo, kind: str | None) -> _Source:
    """A fresh source for one bucket, with the helpers generated code calls."""
    src = _Source(tz, kind)
    src.names.update(
        UNSET=_UNSET,
        DEFER=_DEFER,
        FAST=_FAST_NUMBERS,
        SIMPLE=_SIMPLE,
        DATETIME=datetime,
        is_number=is_number,
        same=same,
        dig=dig,
        display=display,
        CHANGED=change_reason,
        KEYED=_KEYED,
        KIND=_kind_of,
        instant=instants_in(tz),
        KEPT=instants_in(tz).kept,
    )
    return src


def _kind_of(event: Any) -> str:
    """The kind of an event, an Event or the mapping it was decoded from."""
    return event["event"] if type(event) is dict else event.event  # type: ignore[no-any-return]


def _dispatch_field(keys: list[dict[str, str]]) -> str | None:
    """The field whose required value spares the most workflows, if any spares some.

    With values spread evenly, an event runs the workflows of its value and those with
    no key on the field: keyed * (1 - 1/values) is what dispatching on it saves.
    """
    spread: dict[str, set[str]] = {}
    count: Counter[str] = Counter()
    for key in keys:
        for name, value in key.items():
            count[name] += 1
            spread.setdefault(name, set()).add(value)
    best, saved = None, 1.0
    for name, n in count.items():
        gain = n * (1 - 1 / len(spread[name]))
        if n > 1 and gain > saved:
            best, saved = name, gain
    return best


def _dispatcher(field_name: str, table: dict[str, Any], rest: Any) -> Match:
    def match(
        record: dict[str, Any], previous: Any, event: Any, now: datetime, make: MakeFacts
    ) -> list[str]:
        value = record.get(field_name)
        if type(value) is str:
            return table.get(value, rest)(record, previous, event, now, make, value)  # type: ignore[no-any-return]
        return rest(record, previous, event, now, make, value)  # type: ignore[no-any-return]

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


class _Reads:
    """How generated text of one function reads its fields: the `\0v3\0` markers replaced.

    A field is read by a statement before the first block whose first test reads it
    (every event gets there); before that, a test that may read it reads it lazily,
    through a variable that starts unset. Reading a field is pure, so reading it early
    never changes an answer.
    """

    def __init__(self, src: _Source, given: str | None, texts: Sequence[str]) -> None:
        self.src = src
        self.read = {given} if given else set()
        self.lazy: set[str] = set()
        # A field one test of the function reads needs no check whether it was read.
        counts = Counter(var for text in texts for var in _FIRST_USE.findall(text))
        self.once = {var for var, n in counts.items() if n == 1}

    def lead(self, var: str | None) -> list[str]:
        """The statement reading `var` before a block, when nothing read it yet."""
        if var is None or var in self.read:
            return []
        self.read.add(var)
        return [f"    {var} = {self.src.reads[var]}"]

    def sub(self, text: str) -> str:
        return _FIRST_USE.sub(self._use, text)

    def _use(self, m: re.Match[str]) -> str:
        var = m.group(1)
        if var in self.read:
            return var
        if var in self.once:
            return f"({var} := {self.src.reads[var]})"
        self.lazy.add(var)
        return f"({var} if {var} is not UNSET else ({var} := {self.src.reads[var]}))"

    def head(self, signature: str, text: str, *, given: bool = False) -> list[str]:
        """The function's first lines: its signature and the variables `text` uses.

        `given`: the record and previous values are the parameters `r` and `p`.
        """
        src = self.src
        head = [f"def {signature}:"]
        if not given:
            head.append("    r = event.record")
        if "facts" in text:
            head.append("    facts = None")
        head.extend(f"    {var} = UNSET" for var in sorted(self.lazy))
        head.extend(f"    {var} = UNSET" for var in src.instants.values() if var in text)
        head.extend(f"    {var} = UNSET" for var in src.memo.values() if var in text)
        if src.change and "hc" in text:
            if not given:
                head.append("    p = event.previous")
            known = src.kind is not None
            kind = "" if known else " and KIND(event) == 'updated'"
            head.append(f"    hc = p is not None{kind}")
        return head


def _function(
    name: str, members: Sequence[int], given: str | None, blocks: list[_Block], src: _Source
) -> list[str]:
    """One generated function over the blocks `members`, in workflow order."""
    live = [blocks[i] for i in members if not blocks[i].never]
    reads = _Reads(src, given, [t.text for block in live for t in block.tests])
    body: list[str] = []
    for block in live:
        body.extend(reads.lead(block.tests[0].lead if block.tests else None))
        if block.tests:
            test = reads.sub(" and ".join(t.text for t in block.tests))
            body.append(f"    if {test}:\n        {block.append}")
        else:
            body.append(f"    {block.append}")
    text = "\n".join(body)
    signature = f"{name}(r, p, event, now, make{', ' + given if given else ''})"
    head = reads.head(signature, text, given=True)
    return [*head, "    out = []", text, "    return out"]


def _build(
    groups: Sequence[tuple[str, Sequence[int], str | None]], blocks: list[_Block], src: _Source
) -> dict[str, Match]:
    lines: list[str] = []
    for name, members, given in groups:
        lines.extend(_function(name, members, given, blocks, src))
    namespace = src.names
    exec(compile("\n".join(lines), "<crmflow matcher>", "exec"), namespace)
    return {name: namespace[name] for name, _, _ in groups}


# (event, the moment it is judged at, how to make its Facts) -> for each entry of the
# bucket: None when it matches (or its match depends on state), else (its id, why not),
# or what a `Wording` makes of those.
Decide = Callable[[Event, datetime, MakeFacts], list[Any]]


class ValueWords(Protocol):
    """How a `Wording` words "LABEL: was VALUE" for one clause of one workflow."""

    # What it said of string values so far: generated code looks there before calling.
    kept: dict[str, Any]

    def __call__(self, value: Any) -> Any: ...


class Wording(Protocol):
    """What decisions say of a workflow that does not fire, instead of (id, reason).

    A writer that turns each reason into text of its own (a line of JSON) has it made
    where the reason is found: a reason that repeats is then worded once, not rebuilt and
    looked up per event. Whatever it returns stands for (id, reason) and is never None.
    """

    def fixed(self, rule: str, reason: str) -> Any:
        """The words for a reason known when the bucket is compiled."""

    def seen(self, rule: str, label: str) -> ValueWords:
        """The words for `f"{label}: was {display(value)}"`, by the value.

        `kept` holds what it said of str and int values (never of bool or float: 1, 1.0
        and True are one key to a dict, not one value to a reason).
        """

    def changed(self, rule: str, label: str, name: str) -> Callable[[Any, Any], Any]:
        """The words for `change_reason(label, previous, record, name)`, by (previous, record)."""

    def said(self, rule: str) -> Callable[[str], Any]:
        """The words for any other reason, by its text."""

    def planned(self, plan: Any) -> Any:
        """The words for a workflow's plan (a RulePlan), or the plan itself."""


def NO_DECISIONS(event: Event, now: datetime, make: MakeFacts) -> list[Any]:
    """The decisions of a bucket without entries."""
    return []


def compile_decisions(
    entries: Sequence[Entry],
    tz: tzinfo,
    kind: str | None = None,
    words: Wording | None = None,
) -> Decide:
    """One function deciding every entry of a bucket: None, or (id, the reason it does not match).

    The reason is what `trigger.reject` and then `condition.reason` say (a plan carries
    one for every workflow that does not fire), found in one pass: the conjuncts of each
    workflow run in the order it states them, so the first that fails is the one its
    reason names, and that reason is worded from the field as the record holds it, without
    a second evaluation. Fields are read once per event, as in `compile_bucket`. An entry
    whose trigger does not take the event says its static reason; one whose match depends
    on state (a date trigger, a cooldown) says None, left to the evaluator. With `words`,
    what it makes of (id, reason) stands in the list instead.
    """
    if not entries:
        return NO_DECISIONS
    src = _namespace(tz, kind)
    canonical: dict[tuple[str, str, str], FieldClause] = {}
    uses: Counter[int] = Counter()
    conditions = [_canonical(e.workflow.condition, canonical, uses) for e in entries]
    src.shared = {key for key, n in uses.items() if n > 1}
    # Per entry: (lead, [(test that fails, reason)]) or the static answer's text.
    plans: list[tuple[str | None, list[tuple[str, str]]] | str] = []
    for entry, condition in zip(entries, conditions, strict=True):
        workflow = entry.workflow
        if not entry.reacts:
            said = (workflow.id, entry.static_reason)
            plans.append(src.bind(said if words is None else words.fixed(*said)))
            continue
        if workflow.depends_on_state:
            plans.append("None")
            continue
        steps: list[tuple[str, str]] = []
        trigger = workflow.trigger
        if trigger.ignore_actors or trigger.fields:
            steps.append(
                (
                    f"(x := {src.bind(trigger.reject)}({FACTS})) is not None",
                    _said(workflow.id, "x", src, words),
                )
            )
        lead = None
        for n, part in enumerate(_conjuncts(condition) if condition is not ALWAYS else ()):
            test = _expr(part, src)
            if n == 0 and not steps:
                lead = test.lead
            steps.append((f"not {test.text}", _worded(workflow.id, part, src, words)))
        plans.append((lead, steps))

    reads = _Reads(src, None, [t for p in plans if type(p) is tuple for t, _ in p[1]])
    body: list[str] = []
    for plan in plans:
        if type(plan) is str:
            body.append(f"    out.append({plan})")
            continue
        lead, steps = plan  # type: ignore[misc]
        if not steps:
            body.append("    out.append(None)")
            continue
        body.extend(reads.lead(lead))
        for n, (fails, said) in enumerate(steps):
            body.append(f"    {'if' if n == 0 else 'elif'} {reads.sub(fails)}:")
            body.append(f"        out.append({said})")
        body.append("    else:\n        out.append(None)")
    text = "\n".join(body)
    lines = [*reads.head("decide(event, now, make)", text), "    out = []", text, "    return out"]
    exec(compile("\n".join(lines), "<crmflow decisions>", "exec"), src.names)
    return src.names["decide"]  # type: ignore[no-any-return]


def _said(rule: str, reason: str, src: _Source, words: Wording | None) -> str:
    """Generated text of what decisions say for `rule` failing for the text `reason`."""
    if words is None:
        return f"({src.bind(rule, 'w')}, {reason})"
    return f"{src.bind(words.said(rule))}({reason})"


def _worded(rule: str, part: Condition, src: _Source, words: Wording | None) -> str:
    """Generated text of what decisions say for `rule` when `part` is known to fail."""
    if (
        words is None
        or not isinstance(part, FieldClause)
        or part.other is not None
        or "." in part.path
        or src.kind is None
    ):
        return _said(rule, _reason(part, src), src, words)
    if part.definition.kind != "value":
        if src.never_changes:
            return _said(rule, _reason(part, src), src, words)
        changed = words.changed(rule, part.label, part.path)
        return f"{src.bind(changed)}(event.previous, r)"
    # A string or int value (the common case) is looked up before anything is worded or
    # called.
    seen = words.seen(rule, part.label)
    name, kept = src.bind(part.path, "k"), src.bind(seen.kept)
    return f"({kept}.get(o) if type(o := r.get({name})) in KEYED else None) or {src.bind(seen)}(o)"


def _reason(part: Condition, src: _Source) -> str:
    """Generated text of `part.reason(facts)`, for a part known to fail."""
    if (
        not isinstance(part, FieldClause)
        or part.other is not None
        or "." in part.path
        or src.kind is None
    ):
        return f"{src.bind(part.reason)}({FACTS})"
    name = src.bind(part.path, "k")
    if part.definition.kind == "value":
        # What FieldClause.reason says, from the field as the record holds it.
        return f"{src.bind(f'{part.label}: was ')} + display(r.get({name}))"
    if src.never_changes:
        # FieldClause.explain's words for an event that is no update.
        return src.bind(f"{part.label}: a {src.kind} event")
    return f"CHANGED({src.bind(part.label)}, event.previous, r, {name})"


def change_reason(label: str, previous: dict[str, Any] | None, record: Any, name: str) -> str:
    """What FieldClause.explain says of a change clause that failed on an update."""
    if previous is None:
        return f"{label}: no previous values"
    old, new = previous.get(name), record.get(name)
    if old != new:
        return f"{label}: {display(old)} -> {display(new)}"
    return f"{label}: was {display(new)}, unchanged"
