"""Plans per SPEC §4: shapes, due times, waits, skipped and failed actions, triggers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmflow.config import Config
from crmflow.engine.evaluate import Cooldowns, Evaluator
from crmflow.engine.events import parse_event
from crmflow.rules.ruleset import RuleSet, load_ruleset
from crmflow.timeutil import zone
from tests.spec_example import BIG_DEAL, PLAN, WON
from tests.spec_example import EVENT as SPEC_EVENT

Planner = Callable[..., dict[str, Any]]


def test_the_spec_example_plan(plan_for: Planner) -> None:
    plan = plan_for({"a.yaml": BIG_DEAL, "b.yaml": WON}, SPEC_EVENT)
    assert plan == PLAN


def test_only_enabled_workflows_of_the_events_entity_appear(plan_for: Planner) -> None:
    files = {
        "a.yaml": BIG_DEAL,
        "b.yaml": WON.replace("id: deal-won-webhook", "id: off\nenabled: false"),
        "c.yaml": "id: other\nentity: lead\ntrigger: {on: created}\nactions: [{delete: }]\n",
    }
    plan = plan_for(files, SPEC_EVENT)
    assert [r["rule"] for r in plan["rules"]] == ["big-deal-alert"]


def test_no_workflows_gives_an_empty_plan(plan_for: Planner) -> None:
    event = {"entity": "user", "event": "created", "record": {"id": 1}}
    assert plan_for(BIG_DEAL, event) == {
        "event": {"entity": "user", "event": "created", "id": 1},
        "rules": [],
    }


@pytest.mark.parametrize(
    ("on", "event", "matched"),
    [
        ("created", "created", True),
        ("created", "updated", False),
        ("saved", "created", True),
        ("saved", "updated", True),
        ("saved", "deleted", False),
        ("deleted", "deleted", True),
        ("[created, deleted]", "deleted", True),
        ("updated", "tick", False),
    ],
)
def test_trigger_events(plan_for: Planner, on: str, event: str, matched: bool) -> None:
    wf = f"id: w\nentity: deal\ntrigger: {{on: {on}}}\nactions: [{{warn: hi}}]\n"
    ev = {"entity": "deal", "event": event, "record": {"id": 1}}
    if event == "updated":
        ev["previous"] = {"id": 1}
    rule = plan_for(wf, ev)["rules"][0]
    assert rule["matched"] is matched
    if not matched:
        assert event in rule["reason"]


def test_fields_filter_applies_to_updates_only(plan_for: Planner) -> None:
    wf = (
        "id: w\nentity: deal\ntrigger: {on: [created, updated, deleted], fields: [amount]}\n"
        "actions: [{warn: hi}]\n"
    )
    for kind in ("created", "deleted"):
        assert plan_for(wf, {"entity": "deal", "event": kind, "record": {"id": 1}})["rules"][0][
            "matched"
        ]
    same = {
        "entity": "deal",
        "event": "updated",
        "record": {"id": 1, "amount": 5, "x": 1},
        "previous": {"id": 1, "amount": 5, "x": 2},
    }
    rule = plan_for(wf, same)["rules"][0]
    assert rule == {"rule": "w", "matched": False, "reason": "trigger fields amount: none changed"}
    same["record"]["amount"] = 6
    assert plan_for(wf, same)["rules"][0]["matched"]


def test_ignore_actors(plan_for: Planner) -> None:
    wf = (
        "id: w\nentity: deal\ntrigger: {on: created, ignore_actors: [7, crmflow]}\n"
        "actions: [{warn: hi}]\n"
    )
    event = {"entity": "deal", "event": "created", "record": {"id": 1}, "actor": 7}
    assert plan_for(wf, event)["rules"][0]["reason"] == "trigger ignores actor 7"
    event["actor"] = "7"
    assert not plan_for(wf, event)["rules"][0]["matched"]
    event["actor"] = 8
    assert plan_for(wf, event)["rules"][0]["matched"]


DELAYS = """
id: w
entity: quote
trigger: {on: created}
actions:
  - warn: now
  - warn: later
    delay: 14d
  - id: code
    generate_code: {length: 6, alphabet: "AB"}
  - wait: {for: 3d, until: {status: accepted}, on_met: stop}
  - warn: "after {{ steps.code.code }}"
    delay: 2h
  - wait: {until: {status: closed}}
  - warn: never sure
"""


def test_due_times_delays_and_waits(plan_for: Planner) -> None:
    event = {
        "entity": "quote",
        "event": "created",
        "record": {"id": 3},
        "at": "2026-11-22T10:00:00.5Z",
    }
    actions = plan_for(DELAYS, event)["rules"][0]["actions"]
    assert [a["due"] for a in actions] == [
        "2026-11-22T10:00:00.5Z",
        "2026-12-06T10:00:00.5Z",
        "2026-11-22T10:00:00.5Z",
        "2026-11-22T10:00:00.5Z",
        "2026-11-25T12:00:00.5Z",
        "2026-11-25T10:00:00.5Z",
        None,
    ]
    assert [a.get("after_wait", False) for a in actions] == [
        False,
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    assert actions[3] == {
        "type": "wait",
        "due": "2026-11-22T10:00:00.5Z",
        "params": {"for": "3d", "until": {"status": "accepted"}, "on_met": "stop"},
    }
    code = actions[4]["params"]["message"].removeprefix("after ")
    assert len(code) == 6 and set(code) <= {"A", "B"}


def test_delays_use_calendar_days_in_the_time_zone(rules_dir: Callable[..., Path]) -> None:
    folder = rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\n"
            "actions: [{warn: x, delay: 1d}, {warn: y, delay: 24h}]\n"
        }
    )
    config = Config(timezone_name="Europe/Berlin", timezone=zone("Europe/Berlin"))
    rules = load_ruleset([folder], config)
    event = parse_event(
        {"entity": "deal", "event": "created", "record": {"id": 1}, "at": "2026-03-28T12:00:00Z"}
    )
    actions = (
        Evaluator(rules, config.timezone)
        .evaluate(event, datetime.now(UTC))
        .to_json()["rules"][0]["actions"]
    )
    assert [a["due"] for a in actions] == ["2026-03-29T11:00:00Z", "2026-03-29T12:00:00Z"]


def test_skipped_and_failed_actions_do_not_stop_the_others(plan_for: Planner) -> None:
    wf = """
    id: w
    entity: deal
    trigger: {on: created}
    actions:
      - warn: "{{ deal.name }}"
        if: {amount: {gt: 10}}
      - warn: "{{ nosuch.thing }}"
      - warn: "{{ deal.name }} ok"
    """
    event = {
        "entity": "deal",
        "event": "created",
        "record": {"id": 1, "name": "A", "amount": 5},
        "at": "2026-11-22T10:00:00Z",
    }
    actions = plan_for(wf, event)["rules"][0]["actions"]
    assert actions[0] == {
        "type": "warn",
        "due": "2026-11-22T10:00:00Z",
        "skipped": "if: amount gt 10: was 5",
    }
    assert actions[1]["type"] == "warn" and "nosuch" in actions[1]["error"]
    assert "params" not in actions[1]
    assert actions[2]["params"] == {"message": "A ok"}


def test_steps_and_seeded_codes(plan_for: Planner) -> None:
    wf = """
    id: w
    entity: lead
    trigger: {on: created}
    actions:
      - id: promo
        generate_code: {length: 10}
      - id: new
        create: {entity: task, values: {title: "Code {{ steps.promo.code }}"}}
      - update: {values: {promo_code: "{{ steps.promo.code }}", contact_id: "{{ steps.new.id }}"}}
    """
    event = {"entity": "lead", "event": "created", "record": {"id": 1}}
    first = plan_for(wf, event, seed=5)["rules"][0]["actions"]
    again = plan_for(wf, event, seed=5)["rules"][0]["actions"]
    other = plan_for(wf, event, seed=6)["rules"][0]["actions"]
    code = first[2]["params"]["values"]["promo_code"]
    assert len(code) == 10
    assert first[1]["params"]["values"]["title"] == f"Code {code}"
    assert first[2]["params"]["values"]["contact_id"] is None
    assert first == again
    assert other[2]["params"]["values"]["promo_code"] != code


DATE_WF = """
id: anniversary
entity: contract
trigger: {date: start_date, offset: 1y, time: "09:00"}
conditions: {status: active}
actions:
  - warn: one year
  - warn: a week later
    delay: 7d
"""


def test_date_triggers_plan_at_the_date_plus_offset(rules_dir: Callable[..., Path]) -> None:
    folder = rules_dir({"w.yaml": DATE_WF})
    config = Config(timezone_name="Europe/Berlin", timezone=zone("Europe/Berlin"))
    rules = load_ruleset([folder], config)
    evaluator = Evaluator(rules, config.timezone)
    now = datetime(2026, 11, 22, 10, tzinfo=UTC)

    def plan(record: dict[str, Any]) -> dict[str, Any]:
        event = parse_event({"entity": "contract", "event": "created", "record": record})
        return evaluator.evaluate(event, now).to_json()["rules"][0]

    rule = plan({"id": 1, "status": "active", "start_date": "2026-07-01"})
    assert [a["due"] for a in rule["actions"]] == ["2027-07-01T07:00:00Z", "2027-07-08T07:00:00Z"]
    assert "is not set" in plan({"id": 1, "status": "active"})["reason"]
    assert (
        "already past" in plan({"id": 1, "status": "active", "start_date": "2025-01-01"})["reason"]
    )
    assert (
        "status eq active"
        in plan({"id": 1, "status": "draft", "start_date": "2026-07-01"})["reason"]
    )


def test_date_trigger_with_negative_offset_on_a_datetime(plan_for: Planner) -> None:
    wf = "id: w\nentity: task\ntrigger: {date: due_date, offset: -2h}\nactions: [{warn: x}]\n"
    event = {
        "entity": "task",
        "event": "updated",
        "record": {"id": 1, "due_date": "2026-12-01T12:00:00Z"},
        "previous": {"id": 1},
    }
    assert plan_for(wf, event)["rules"][0]["actions"][0]["due"] == "2026-12-01T10:00:00Z"


def test_schedule_workflows_react_to_ticks_only(plan_for: Planner) -> None:
    wf = (
        "id: s\nentity: lead\ntrigger: {schedule: '0 8 * * *'}\nconditions: {status: new}\n"
        "actions: [{warn: x}]\n"
    )
    tick = {
        "entity": "lead",
        "event": "tick",
        "record": {"id": 1, "status": "new"},
        "at": "2026-11-23T08:00:00Z",
    }
    assert plan_for(wf, tick)["rules"][0]["actions"][0]["due"] == "2026-11-23T08:00:00Z"
    created = {"entity": "lead", "event": "created", "record": {"id": 1, "status": "new"}}
    assert not plan_for(wf, created)["rules"][0]["matched"]
    tick["rule"] = "another"
    assert not plan_for(wf, tick)["rules"][0]["matched"]


def test_cooldown_within_one_evaluator(rules_dir: Callable[..., Path]) -> None:
    folder = rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ntrigger: {on: saved}\ncooldown: 14d\n"
            "conditions: {amount: {gt: 5}}\nactions: [{warn: x}]\n"
        }
    )
    evaluator = Evaluator(load_ruleset([folder], Config()), UTC)

    def run(at: str, amount: int = 10, record_id: int = 1) -> bool:
        event = parse_event(
            {
                "entity": "deal",
                "event": "created",
                "record": {"id": record_id, "amount": amount},
                "at": at,
            }
        )
        return evaluator.evaluate(event, datetime.now(UTC)).rules[0].matched

    assert run("2026-11-01T00:00:00Z", amount=1) is False  # did not fire: no cooldown
    assert run("2026-11-01T00:00:00Z") is True
    assert run("2026-11-10T00:00:00Z") is False
    assert run("2026-11-10T00:00:00Z", record_id=2) is True
    assert run("2026-11-15T00:00:00Z") is True


def test_matching_judges_without_recording_anything(rules_dir: Callable[..., Path]) -> None:
    """What a backfill preview relies on: asking which workflows match fires none."""
    folder = rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ntrigger: {on: saved}\ncooldown: 14d\n"
            "conditions: {amount: {gt: 5}}\nactions: [{warn: x}]\n"
        }
    )
    cooldowns = Cooldowns()
    evaluator = Evaluator(load_ruleset([folder], Config()), UTC, cooldowns=cooldowns)
    event = parse_event(
        {
            "entity": "deal",
            "event": "created",
            "record": {"id": 1, "amount": 10},
            "at": "2026-11-01T00:00:00Z",
        }
    )
    now = datetime.now(UTC)
    assert evaluator.matching(event, now) == ["w"]
    assert evaluator.matching(event, now) == ["w"]  # still: the first asked, fired nothing
    assert cooldowns.last("w", "deal", 1) is None
    assert evaluator.evaluate(event, now).rules[0].matched
    assert cooldowns.last("w", "deal", 1) is not None
    assert evaluator.matching(event, now) == []  # now the cooldown holds


def test_event_at_is_now_for_relative_conditions(plan_for: Planner) -> None:
    wf = (
        "id: w\nentity: lead\ntrigger: {on: created}\n"
        "conditions: {last_activity_at: {before: -14d}}\nactions: [{warn: x}]\n"
    )
    event = {
        "entity": "lead",
        "event": "created",
        "record": {"id": 1, "last_activity_at": "2026-11-01T00:00:00Z"},
    }
    assert plan_for(wf, {**event, "at": "2026-11-20T00:00:00Z"})["rules"][0]["matched"]
    assert not plan_for(wf, {**event, "at": "2026-11-10T00:00:00Z"})["rules"][0]["matched"]
    assert plan_for(wf, event, now=datetime(2026, 11, 20, tzinfo=UTC))["rules"][0]["matched"]


def test_template_context(plan_for: Planner) -> None:
    wf = """
    id: ctx
    name: Context
    entity: deal
    trigger: {on: updated}
    actions:
      - webhook:
          url: "https://x.example/{{ record.id }}"
          body:
            rule: "{{ rule.id }} / {{ rule.name }}"
            actor: "{{ actor }}"
            prev: "{{ previous.amount }}"
            changes: "{{ changes }}"
            now: "{{ now }}"
            same: "{{ deal is sameas record }}"
    """
    event = {
        "entity": "deal",
        "event": "updated",
        "record": {"id": 9, "amount": 2},
        "previous": {"id": 9, "amount": 1},
        "actor": 3,
        "at": "2026-11-22T10:00:00Z",
    }
    body = plan_for(wf, event)["rules"][0]["actions"][0]["params"]["body"]
    assert body == {
        "rule": "ctx / Context",
        "actor": 3,
        "prev": 1,
        "changes": {"amount": [1, 2]},
        "now": "2026-11-22T10:00:00+00:00",
        "same": True,
    }


def test_evaluation_is_indexed_by_entity_and_event(rules_dir: Callable[..., Path]) -> None:
    files = {
        f"c{i}.yaml": f"id: c{i}\nentity: company\ntrigger: {{on: created}}\n"
        "conditions: {name: x}\nactions: [{warn: x}]\n"
        for i in range(300)
    }
    files |= {
        f"d{i}.yaml": f"id: d{i}\nentity: deal\ntrigger: {{on: created}}\n"
        "conditions: {name: x}\nactions: [{warn: x}]\n"
        for i in range(300)
    }
    files["u.yaml"] = (
        "id: u\nentity: deal\ntrigger: {on: updated}\nconditions: {name: x}\nactions: [{warn: x}]\n"
    )
    rules: RuleSet = load_ruleset([rules_dir(files)], Config())
    calls: list[str] = []
    for workflow in rules.workflows:
        # Asked whether it holds, or why not (the matcher answers the first without a call).
        original, why = workflow.condition.check, workflow.condition.reason
        workflow.condition.check = (  # type: ignore[method-assign]
            lambda facts, w=workflow.id, f=original: calls.append(w) or f(facts)
        )
        workflow.condition.reason = (  # type: ignore[method-assign]
            lambda facts, w=workflow.id, f=why: calls.append(w) or f(facts)
        )
    event = parse_event(
        {"entity": "deal", "event": "updated", "record": {"id": 1}, "previous": {"id": 1}}
    )
    plan = Evaluator(rules, UTC).evaluate(event, datetime.now(UTC))
    # No workflow of another bucket was asked; the bucket's compiled decisions answer
    # the one that takes deal updates, and word its reason, without a call.
    assert set(calls) <= {"u"}
    assert len(plan.rules) == 301  # yet every deal workflow is reported
    assert plan.rules[-1].reason == "name eq x: was null"
    assert sum(1 for e in rules.entries("deal", "created") if e.reacts) == 300
