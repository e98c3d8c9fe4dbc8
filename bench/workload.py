"""A deterministic synthetic CRM workload, described once and rendered for every engine.

5 entities; created/updated/deleted events with previous values on updates; records of
15 fields; workflows of 2-4 clauses mixing numeric comparison, equality, membership,
substring, changed-to and relative-date checks, some of them in `any` groups.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crmflow.engine.events import Event

ENTITIES = ["deal", "lead", "company", "project", "task"]
KINDS = ["created", "updated", "deleted"]
STAGES = ["new", "open", "qualified", "proposal", "won", "lost"]
COUNTRIES = ["DE", "FR", "AT", "NL", "US", "GB", "IT", "ES"]
WORDS = ["acme", "nord", "sun", "berg", "delta", "omega", "alpha", "metro"]
NUMERIC = ["amount", "score", "hours"]
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

# A clause: ("num", field, bound) | ("eq", stage) | ("in", countries) | ("contains", word)
#           | ("changed_to", stage) | ("date", days) | ("any", clause, clause)
Clause = tuple[Any, ...]


@dataclass(frozen=True)
class Rule:
    id: str
    entity: str
    events: tuple[str, ...]
    clauses: tuple[Clause, ...]


def _clause(rng: random.Random) -> Clause:
    kind = rng.choice(["num", "eq", "in", "contains", "changed_to", "date"])
    if kind == "num":
        return ("num", rng.choice(NUMERIC), rng.randint(0, 1000))
    if kind == "in":
        return ("in", tuple(rng.sample(COUNTRIES, 3)))
    if kind == "contains":
        return ("contains", rng.choice(WORDS))
    if kind == "date":
        return ("date", rng.randint(1, 60))
    return (kind, rng.choice(STAGES))


def rules(count: int, seed: int = 7) -> list[Rule]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        entity = rng.choice(ENTITIES)
        events = tuple(sorted(rng.sample(KINDS, rng.randint(1, 2))))
        parts = [_clause(rng) for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.3 and len(parts) >= 3:
            a, b = parts.pop(), parts.pop()
            parts.append(("any", a, b))
        out.append(Rule(f"w{i}", entity, events, tuple(parts)))
    return out


def events(count: int, seed: int = 11) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        record = {
            "id": i,
            "name": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
            "stage": rng.choice(STAGES),
            "country": rng.choice(COUNTRIES),
            "amount": rng.randint(0, 1200),
            "score": rng.random() * 1000,
            "hours": rng.randint(0, 1000),
            "last_activity_at": (NOW - timedelta(days=rng.randint(0, 90))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "owner_id": rng.randint(1, 9),
            "email": "x@example.org",
            "phone": "+49 1",
            "city": "Berlin",
            "zip": "10115",
            "source": "web",
            "priority": "high",
        }
        kind = rng.choice(["created", "updated", "updated", "deleted"])
        previous = dict(record, stage=rng.choice(STAGES)) if kind == "updated" else None
        out.append(Event(rng.choice(ENTITIES), kind, record, previous, at=NOW))
    return out


def flat(event: Event) -> dict[str, Any]:
    """The event as one flat mapping, the shape the peer engines take.

    Made before timing starts, so the peers do not pay for it: the previous stage as a
    field of its own and the last activity as epoch seconds.
    """
    moment = datetime.fromisoformat(event.record["last_activity_at"])
    return dict(
        event.record,
        entity=event.entity,
        event=event.event,
        prev_stage=(event.previous or {}).get("stage"),
        stage_changed=event.previous is not None
        and event.previous.get("stage") != event.record["stage"],
        last_activity_ts=moment.timestamp(),
    )


def date_bound(days: int) -> float:
    """Epoch seconds of `-{days}d` from NOW: what `last_activity_at before -Nd` means."""
    return (NOW - timedelta(days=days)).timestamp()


def crmflow_condition(clause: Clause) -> dict[str, Any]:
    kind = clause[0]
    if kind == "num":
        return {clause[1]: {"gt": clause[2]}}
    if kind == "eq":
        return {"stage": clause[1]}
    if kind == "in":
        return {"country": {"in": list(clause[1])}}
    if kind == "contains":
        return {"name": {"contains": clause[1]}}
    if kind == "changed_to":
        return {"stage": {"changed_to": clause[1]}}
    if kind == "date":
        return {"last_activity_at": {"before": f"-{clause[1]}d"}}
    return {"any": [crmflow_condition(clause[1]), crmflow_condition(clause[2])]}


def crmflow_documents(ruleset: list[Rule]) -> list[dict[str, Any]]:
    return [
        {
            "id": rule.id,
            "entity": rule.entity,
            "trigger": {"on": list(rule.events)},
            "conditions": [crmflow_condition(c) for c in rule.clauses],
            "actions": [{"warn": "x"}],
        }
        for rule in ruleset
    ]
