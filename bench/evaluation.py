"""Deciding what an event triggers: crmflow against the same rules written by hand.

A deterministic synthetic CRM workload (5 entities, created/updated/deleted events with
previous values, records of about 15 fields, workflows of 2-4 clauses mixing numeric
comparison, equality, membership, substring, changed-to and relative-date checks, some
`any` groups). The baseline is the same conditions as Python lambdas, indexed by
(entity, event): the fastest a hand-written engine gets. Both must agree on every
(event, workflow) match, or the benchmark fails.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from crmflow.config import Config
from crmflow.evaluate import Evaluator
from crmflow.events import Event
from crmflow.ruleset import load_ruleset
from crmflow.timeutil import parse_datetime

ENTITIES = ["deal", "lead", "company", "project", "task"]
STAGES = ["new", "open", "qualified", "proposal", "won", "lost"]
COUNTRIES = ["DE", "FR", "AT", "NL", "US", "GB", "IT", "ES"]
WORDS = ["acme", "nord", "sun", "berg", "delta", "omega", "alpha", "metro"]
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

Check = Callable[[dict[str, Any], dict[str, Any] | None, str], bool]


def _clause(rng: random.Random) -> tuple[dict[str, Any], Check]:
    kind = rng.choice(["num", "eq", "in", "contains", "changed_to", "date"])
    if kind == "num":
        field, bound = rng.choice(["amount", "score", "hours"]), rng.randint(0, 1000)
        return {field: {"gt": bound}}, lambda r, p, e: _num(r.get(field)) and r[field] > bound
    if kind == "eq":
        stage = rng.choice(STAGES)
        return {"stage": stage}, lambda r, p, e: r.get("stage") == stage
    if kind == "in":
        picks = rng.sample(COUNTRIES, 3)
        return {"country": {"in": picks}}, lambda r, p, e: r.get("country") in picks
    if kind == "contains":
        word = rng.choice(WORDS)
        return {"name": {"contains": word}}, lambda r, p, e: word in (r.get("name") or "")
    if kind == "changed_to":
        stage = rng.choice(STAGES)
        return (
            {"stage": {"changed_to": stage}},
            lambda r, p, e: (
                e == "updated"
                and p is not None
                and p.get("stage") != stage
                and r.get("stage") == stage
            ),
        )
    days = rng.randint(1, 60)
    bound = NOW - timedelta(days=days)
    return (
        {"last_activity_at": {"before": f"-{days}d"}},
        lambda r, p, e: (
            (t := parse_datetime(r.get("last_activity_at") or "")) is not None and t < bound
        ),
    )


def _num(value: Any) -> bool:
    return type(value) in (int, float)


def workflows(
    count: int, seed: int = 7
) -> tuple[list[dict[str, Any]], list[tuple[str, frozenset[str], Check]]]:
    rng = random.Random(seed)
    docs, hand = [], []
    for i in range(count):
        entity = rng.choice(ENTITIES)
        events = frozenset(rng.sample(["created", "updated", "deleted"], rng.randint(1, 2)))
        parts = [_clause(rng) for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.3 and len(parts) >= 3:
            (a, fa), (b, fb) = parts.pop(), parts.pop()
            parts.append(
                ({"any": [a, b]}, lambda r, p, e, fa=fa, fb=fb: fa(r, p, e) or fb(r, p, e))
            )
        checks = [f for _, f in parts]
        docs.append(
            {
                "id": f"w{i}",
                "entity": entity,
                "trigger": {"on": sorted(events)},
                "conditions": [c for c, _ in parts],
                "actions": [{"warn": "x"}],
            }
        )
        hand.append((entity, events, lambda r, p, e, cs=tuple(checks): all(c(r, p, e) for c in cs)))
    return docs, hand


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


def measure(
    sizes: tuple[int, ...] = (10, 100, 1000), n_events: int = 20000
) -> list[dict[str, Any]]:
    rows = []
    stream = events(n_events)
    for size in sizes:
        docs, hand = workflows(size)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "w.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
            rules = load_ruleset([Path(folder)], Config())
        evaluator = Evaluator(rules, UTC)
        index: dict[tuple[str, str], list[tuple[str, Check]]] = {}
        for i, (entity, kinds, check) in enumerate(hand):
            for kind in kinds:
                index.setdefault((entity, kind), []).append((f"w{i}", check))

        def run_hand(
            index: dict[tuple[str, str], list[tuple[str, Check]]] = index,
        ) -> list[list[str]]:
            return [
                [
                    wid
                    for wid, check in index.get((e.entity, e.event), ())
                    if check(e.record, e.previous, e.event)
                ]
                for e in stream
            ]

        def run_crmflow(evaluator: Evaluator = evaluator) -> list[list[str]]:
            return [evaluator.matching(e, NOW) for e in stream]

        expected, got = run_hand(), run_crmflow()
        if expected != got:
            bad = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
            raise AssertionError(
                f"{size} workflows: event {bad} matched {got[bad]}, "
                f"hand-written says {expected[bad]}"
            )
        hand_s = _best(run_hand)
        ours_s = _best(run_crmflow)
        rows.append(
            {
                "workflows": size,
                "events": n_events,
                "matches": sum(len(m) for m in expected),
                "baseline_eps": round(n_events / hand_s),
                "crmflow_eps": round(n_events / ours_s),
                "ratio": round(hand_s / ours_s, 2),
            }
        )
    return rows


def _best(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":
    for row in measure():
        print(row)
