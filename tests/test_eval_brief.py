"""The fast JSON of `crmflow eval --dry-run --format json` against the plan's own JSON.

The stream writer words workflows that do not fire where the decisions find their
reason, keeps fragments by value and keeps the plans of workflows that depend on the
moment alone; every line must still be what `Plan.to_json` written strictly gives.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmflow.commands import eval_stream
from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import EventError, read_events
from crmflow.rules.ruleset import load_ruleset

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)

WORKFLOWS = {
    "flows.yaml": """
        id: fixed
        entity: deal
        trigger: {on: [created, updated]}
        conditions:
          - stage: {ne: lost}
          - amount: {gt: 100}
        actions:
          - warn: {message: "Grüße \\"x\\" \\\\ ✓"}
          - wait: {for: 2d}
          - set_stage: {stage: won}
            delay: 1h
        ---
        id: templated
        entity: deal
        trigger: {on: [created, updated]}
        conditions:
          - name: {contains: a}
        actions:
          - warn: {message: "{{ deal.name }} {{ deal.amount }}"}
          - update: {values: {big: "{{ deal.amount * 1e308 if deal.amount is number else 0 }}"}}
        ---
        id: changes
        entity: deal
        trigger: {on: [updated], fields: [stage]}
        conditions:
          - stage: {changed_to: won}
          - country: {in: [DE, AT]}
        actions:
          - generate_code: {length: 4}
        ---
        id: cooling
        entity: deal
        cooldown: 1d
        trigger: {on: [created, updated]}
        actions:
          - warn: {message: cool}
        ---
        id: dated
        entity: deal
        trigger: {date: close_date, offset: -7d}
        actions:
          - warn: {message: soon}
        ---
        id: ticked
        entity: deal
        trigger: {schedule: "0 8 * * 1-5"}
        conditions:
          - stage: {ne: won}
        actions:
          - warn: {message: tick}
        ---
        id: nan
        entity: lead
        trigger: {on: [created]}
        actions:
          - update: {values: {x: .nan}}
        """
}

VALUES: list[Any] = [
    "ACME",
    "",
    "Straße",
    "a\u2028b",
    "\x01",
    1,
    1.0,
    True,
    None,
    250,
    2.5,
    [1],
    {"a": 1},
]


def _events() -> str:
    lines = []
    for n, value in enumerate(VALUES * 3):
        kind = ("created", "updated", "deleted", "tick")[n % 4]
        record = {
            "id": [7, str(n), None, 1.5, n][n % 5],
            "name": value,
            "amount": value if n % 2 else 500,
            "stage": ["won", "lost", value][n % 3],
            "country": ["DE", value][n % 2],
            "close_date": ["2026-12-24", "2026-11-01", value][n % 3],
        }
        event: dict[str, Any] = {"entity": "deal", "event": kind, "record": record}
        if kind == "updated":
            event["previous"] = dict(record, stage=["won", "lost", value, None][n % 4])
        if kind == "tick" and n % 8 == 3:
            event["rule"] = "fixed"
        if n % 5 == 0:
            event["at"] = "2026-11-23T09:30:00Z"
        lines.append(json.dumps(event, ensure_ascii=n % 2 == 0))
    lines.append('{"entity": "lead", "event": "created", "record": {"id": 1}}')
    return "\n".join(lines) + "\n"


def _lines(rules_dir: Callable[..., Path], brief: bool) -> str:
    rules = load_ruleset([rules_dir(WORKFLOWS)], Config())
    evaluator = Evaluator(rules, UTC, seed=3)
    sink = io.StringIO()
    if brief:
        write = eval_stream._brief_writer(sink, eval_stream._careful_writer(sink))
    else:
        plain = eval_stream._json_writer(sink, explain=False)
    for item in read_events(io.StringIO(_events())):
        assert not isinstance(item, EventError), item
        if brief:
            write(item, *evaluator.evaluate_brief(item, NOW, write.words))
        else:
            plain(evaluator.evaluate(item, NOW))
    return sink.getvalue()


def test_the_fast_lines_are_the_plans_written_strictly(rules_dir: Callable[..., Path]) -> None:
    fast, plain = _lines(rules_dir, brief=True), _lines(rules_dir, brief=False)
    assert fast == plain
    # split, not splitlines: a reason may hold U+2028.
    rules = [rule for line in fast.split("\n")[:-1] for rule in json.loads(line)["rules"]]
    # Every kind of part was written: fixed plans, templated ones, NaN written carefully.
    assert {r["rule"] for r in rules if r["matched"]} >= {"fixed", "templated", "cooling", "nan"}
    assert any(r.get("reason", "").startswith("cooldown") for r in rules)
    assert '"x": null' in fast


def test_fragments_are_forgotten_when_full() -> None:
    words = eval_stream._Words(json.encoder.encode_basestring)  # type: ignore[attr-defined]
    seen = words.seen("w", "name eq x")
    for n in range(eval_stream.FRAGMENTS_KEPT + 10):
        assert seen(f"v{n}") == words.fixed("w", f"name eq x: was v{n}")
    assert len(seen.kept) <= eval_stream.FRAGMENTS_KEPT
    # 1, 1.0 and True say different things: only str and int are kept by value.
    assert [seen(v) for v in (1, 1.0, True)] == [
        words.fixed("w", f"name eq x: was {text}") for text in ("1", "1.0", "true")
    ]
