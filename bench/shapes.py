"""Workloads that stress different parts of evaluation, each with its hand-written baseline.

The first workload (bench.workload) was the one the matcher grew up on. These are
written apart from it, so a speed-up that only fits one shape shows:

- `mixed`: bench.workload's workflows, with the events of that module.
- `spread`: equality spread over a dozen fields (no field splits the workflows well),
  comparisons on three timestamps that are nearly all distinct (no parse cache helps).
- `sparse`: workflows on two of six entities, most only on updates (about three events
  in four find no workflow), `any` groups of up to four branches, and paths into the
  related records the event embeds (`company.country`, `owner.team`).

Each renders a workflow three ways: the crmflow condition, and the Python a competent
programmer would write by hand, for records carrying datetimes or ISO strings (parsed
with datetime.fromisoformat at each use, as a lambda would). Events are raw mappings, as
decoded from JSON: what a caller of the library has before it builds an `Event`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bench import workload

NOW = workload.NOW
KINDS = ("created", "updated", "deleted")

# A clause: ("eq", path, value) | ("in", path, values) | ("num", path, op, bound)
#           | ("contains", path, word) | ("changed_to", path, value)
#           | ("date", path, "before" | "after", days) | ("any", clause, ...)
Clause = tuple[Any, ...]
RawEvent = dict[str, Any]
_PY_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class Flow:
    id: str
    entity: str
    events: tuple[str, ...]
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class Shape:
    """A workload: what it stresses, its workflows and its events."""

    name: str
    stresses: str
    flows: Callable[[int, int], list[Flow]]  # (count, seed)
    events: Callable[[int, int], list[RawEvent]]  # (count, seed), ISO strings


# -- rendering ------------------------------------------------------------------------------
def condition(clause: Clause) -> dict[str, Any]:
    """The clause as a crmflow condition."""
    kind = clause[0]
    if kind == "eq":
        return {clause[1]: clause[2]}
    if kind == "in":
        return {clause[1]: {"in": list(clause[2])}}
    if kind == "num":
        return {clause[1]: {clause[2]: clause[3]}}
    if kind == "contains":
        return {clause[1]: {"contains": clause[2]}}
    if kind == "changed_to":
        return {clause[1]: {"changed_to": clause[2]}}
    if kind == "date":
        sign = "-" if clause[2] == "before" else "+"
        return {clause[1]: {clause[2]: f"{sign}{clause[3]}d"}}
    return {"any": [condition(c) for c in clause[1:]]}


def documents(flows: list[Flow]) -> list[dict[str, Any]]:
    return [
        {
            "id": flow.id,
            "entity": flow.entity,
            "trigger": {"on": list(flow.events)},
            "conditions": [condition(c) for c in flow.clauses],
            "actions": [{"warn": "x"}],
        }
        for flow in flows
    ]


def _read(path: str) -> str:
    return "r" + "".join(f"[{part!r}]" for part in path.split("."))


def python(clause: Clause, names: dict[str, Any], iso: bool) -> str:
    """The clause as a Python expression over `r` (record), `p` (previous), `e` (event)."""
    kind = clause[0]
    if kind == "eq":
        return f"{_read(clause[1])} == {clause[2]!r}"
    if kind == "in":
        return f"{_read(clause[1])} in {set(clause[2])!r}"
    if kind == "num":
        return f"{_read(clause[1])} {_PY_OPS[clause[2]]} {clause[3]!r}"
    if kind == "contains":
        return f"{clause[2]!r} in {_read(clause[1])}"
    if kind == "changed_to":
        old, new = _read(clause[1]).replace("r[", "p[", 1), _read(clause[1])
        return f"(e == 'updated' and {old} != {clause[2]!r} and {new} == {clause[2]!r})"
    if kind == "date":
        days = clause[3] if clause[2] == "after" else -clause[3]
        bound = f"b{len(names)}"
        names[bound] = NOW + timedelta(days=days)
        value = f"iso({_read(clause[1])})" if iso else _read(clause[1])
        return f"{value} {'<' if clause[2] == 'before' else '>'} {bound}"
    return "(" + " or ".join(python(c, names, iso) for c in clause[1:]) + ")"


HandRun = Callable[[list[RawEvent]], list[list[str]]]


def hand_engine(flows: list[Flow], iso: bool) -> HandRun:
    """One lambda per workflow, indexed by (entity, event): the baseline."""
    names: dict[str, Any] = {"iso": datetime.fromisoformat}
    table: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for flow in flows:
        body = " and ".join(python(c, names, iso) for c in flow.clauses)
        test = eval(f"lambda r, p, e: {body}", names)
        for kind in flow.events:
            table.setdefault((flow.entity, kind), []).append((flow.id, test))

    def run(stream: list[RawEvent]) -> list[list[str]]:
        out = []
        for d in stream:
            kind = d["event"]
            record, previous = d["record"], d.get("previous")
            out.append(
                [
                    wid
                    for wid, test in table.get((d["entity"], kind), ())
                    if test(record, previous, kind)
                ]
            )
        return out

    return run


# -- variants -------------------------------------------------------------------------------
def with_datetimes(stream: list[RawEvent], fields: tuple[str, ...]) -> list[RawEvent]:
    """The stream with the ISO strings of `fields` as aware datetimes (a database driver's)."""

    def convert(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is None:
            return None
        return {
            k: datetime.fromisoformat(v) if k in fields and isinstance(v, str) else v
            for k, v in record.items()
        }

    return [
        dict(d, record=convert(d["record"]), previous=convert(d.get("previous"))) for d in stream
    ]


# -- mixed: bench.workload -------------------------------------------------------------------
def _mixed_clause(clause: workload.Clause) -> Clause:
    kind = clause[0]
    if kind == "num":
        return ("num", clause[1], "gt", clause[2])
    if kind == "eq":
        return ("eq", "stage", clause[1])
    if kind == "in":
        return ("in", "country", clause[1])
    if kind == "contains":
        return ("contains", "name", clause[1])
    if kind == "changed_to":
        return ("changed_to", "stage", clause[1])
    if kind == "date":
        return ("date", "last_activity_at", "before", clause[1])
    return ("any", _mixed_clause(clause[1]), _mixed_clause(clause[2]))


def _mixed_flows(count: int, seed: int) -> list[Flow]:
    return [
        Flow(r.id, r.entity, r.events, tuple(_mixed_clause(c) for c in r.clauses))
        for r in workload.rules(count, seed)
    ]


def _mixed_events(count: int, seed: int) -> list[RawEvent]:
    return [
        {"entity": e.entity, "event": e.event, "record": e.record, "previous": e.previous}
        for e in workload.events(count, seed)
    ]


# -- spread: equality on many fields, distinct timestamps ------------------------------------
SPREAD_ENTITIES = ["deal", "lead", "company", "ticket", "order"]
CATEGORIES = {
    "stage": ["new", "open", "won", "lost", "hold"],
    "country": ["DE", "FR", "AT", "NL", "US", "GB", "IT", "ES"],
    "source": ["web", "phone", "mail", "fair", "partner"],
    "priority": ["low", "mid", "high", "urgent"],
    "industry": ["retail", "bank", "health", "auto", "energy", "media"],
    "segment": ["smb", "mid", "ent"],
    "currency": ["EUR", "USD", "GBP", "CHF"],
    "region": ["north", "south", "east", "west"],
    "status": ["active", "paused", "churned"],
    "tier": ["bronze", "silver", "gold", "platinum"],
    "channel": ["direct", "reseller", "online"],
    "language": ["de", "en", "fr", "it", "es"],
}
SPREAD_NUMBERS = ["amount", "seats", "discount"]
TIMESTAMPS = ("created_at", "updated_at", "closed_at")


def _spread_clause(rng: random.Random, kind: str) -> Clause:
    if kind == "eq":
        name = rng.choice(list(CATEGORIES))
        return ("eq", name, rng.choice(CATEGORIES[name]))
    if kind == "in":
        name = rng.choice(list(CATEGORIES))
        return ("in", name, tuple(rng.sample(CATEGORIES[name], 2)))
    if kind == "num":
        return ("num", rng.choice(SPREAD_NUMBERS), rng.choice(list(_PY_OPS)), rng.randint(0, 1000))
    if kind == "changed_to":
        name = rng.choice(["stage", "status", "tier"])
        return ("changed_to", name, rng.choice(CATEGORIES[name]))
    return ("date", rng.choice(TIMESTAMPS), rng.choice(["before", "after"]), rng.randint(1, 300))


def _spread_flows(count: int, seed: int) -> list[Flow]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kinds = ["eq"] * rng.randint(1, 2)
        kinds += rng.sample(["in", "num", "date", "date", "changed_to"], rng.randint(1, 2))
        rng.shuffle(kinds)
        clauses = tuple(_spread_clause(rng, k) for k in kinds)
        events = tuple(sorted(rng.sample(KINDS, rng.randint(1, 2))))
        out.append(Flow(f"s{i}", rng.choice(SPREAD_ENTITIES), events, clauses))
    return out


def _stamp(rng: random.Random) -> str:
    # Seconds over two years around NOW: nearly every timestamp of the stream is new.
    moment = NOW + timedelta(seconds=rng.randint(-365 * 86400, 365 * 86400))
    if rng.random() < 0.5:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.astimezone(_CET).isoformat()


_CET = timezone(timedelta(hours=1))


def _spread_events(count: int, seed: int) -> list[RawEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        record: dict[str, Any] = {"id": i}
        for name, choices in CATEGORIES.items():
            record[name] = rng.choice(choices)
        for name in SPREAD_NUMBERS:
            record[name] = rng.randint(0, 1000) if name != "discount" else rng.random() * 1000
        for name in TIMESTAMPS:
            record[name] = _stamp(rng)
        kind = rng.choice(["created", "updated", "updated", "deleted"])
        previous = None
        if kind == "updated":
            previous = dict(record)
            for name in rng.sample(["stage", "status", "tier"], 2):
                previous[name] = rng.choice(CATEGORIES[name])
        out.append(
            {
                "entity": rng.choice(SPREAD_ENTITIES),
                "event": kind,
                "record": record,
                "previous": previous,
            }
        )
    return out


# -- sparse: empty buckets, `any` groups, related-record paths --------------------------------
SPARSE_ENTITIES = ["deal", "ticket", "contact", "note", "call", "invoice"]
RELATED = {
    "company.country": CATEGORIES["country"],
    "company.tier": CATEGORIES["tier"],
    "company.industry": CATEGORIES["industry"],
    "owner.team": ["sales", "support", "success", "ops"],
    "owner.role": ["rep", "lead", "manager"],
}
RELATED_NUMBERS = ["company.employees", "owner.quota"]


def _sparse_leaf(rng: random.Random) -> Clause:
    kind = rng.choice(["eq", "eq", "in", "num", "related_num", "changed_to", "contains"])
    if kind == "eq":
        path = rng.choice([*RELATED, "stage", "priority"])
        choices = RELATED.get(path) or CATEGORIES[path]
        return ("eq", path, rng.choice(choices))
    if kind == "in":
        path = rng.choice(list(RELATED))
        return ("in", path, tuple(rng.sample(RELATED[path], 2)))
    if kind == "num":
        return ("num", "amount", rng.choice(list(_PY_OPS)), rng.randint(0, 1000))
    if kind == "related_num":
        return ("num", rng.choice(RELATED_NUMBERS), rng.choice(["gt", "lt"]), rng.randint(0, 5000))
    if kind == "changed_to":
        return ("changed_to", "stage", rng.choice(CATEGORIES["stage"]))
    return ("contains", "subject", rng.choice(["refund", "urgent", "invoice", "demo"]))


def _sparse_flows(count: int, seed: int) -> list[Flow]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        clauses: list[Clause] = []
        for _ in range(rng.randint(1, 2)):
            clauses.append(("any", *(_sparse_leaf(rng) for _ in range(rng.randint(2, 4)))))
        clauses.extend(_sparse_leaf(rng) for _ in range(rng.randint(0, 1)))
        rng.shuffle(clauses)
        events = ("updated",) if rng.random() < 0.8 else ("created", "updated")
        out.append(Flow(f"y{i}", rng.choice(SPARSE_ENTITIES[:2]), events, tuple(clauses)))
    return out


def _sparse_events(count: int, seed: int) -> list[RawEvent]:
    rng = random.Random(seed)
    words = ["refund", "urgent", "invoice", "demo", "call", "hello", "follow", "up"]
    out = []
    for i in range(count):
        record: dict[str, Any] = {
            "id": i,
            "stage": rng.choice(CATEGORIES["stage"]),
            "priority": rng.choice(CATEGORIES["priority"]),
            "amount": rng.randint(0, 1000),
            "subject": " ".join(rng.sample(words, 3)),
            "company": {
                "id": rng.randint(1, 500),
                "country": rng.choice(RELATED["company.country"]),
                "tier": rng.choice(RELATED["company.tier"]),
                "industry": rng.choice(RELATED["company.industry"]),
                "employees": rng.randint(1, 5000),
            },
            "owner": {
                "id": rng.randint(1, 40),
                "team": rng.choice(RELATED["owner.team"]),
                "role": rng.choice(RELATED["owner.role"]),
                "quota": rng.randint(0, 5000),
            },
            "updated_at": _stamp(rng),
        }
        kind = rng.choice(KINDS)
        previous = (
            dict(record, stage=rng.choice(CATEGORIES["stage"])) if kind == "updated" else None
        )
        out.append(
            {
                "entity": rng.choice(SPARSE_ENTITIES),
                "event": kind,
                "record": record,
                "previous": previous,
            }
        )
    return out


SHAPES = {
    "mixed": Shape(
        "mixed",
        "the first workload: comparisons, equality on one field, dates repeating by day",
        _mixed_flows,
        _mixed_events,
    ),
    "spread": Shape(
        "spread",
        "equality over 12 fields, timestamps to the second (nearly all distinct)",
        _spread_flows,
        _spread_events,
    ),
    "sparse": Shape(
        "sparse",
        "3 of 4 events find no workflow, `any` groups, related-record paths",
        _sparse_flows,
        _sparse_events,
    ),
}
DATE_FIELDS = ("last_activity_at", *TIMESTAMPS, "updated_at")
