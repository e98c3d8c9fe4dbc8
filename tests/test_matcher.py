"""The shared-work matcher answers exactly what the per-workflow evaluation answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event
from crmflow.rules.ruleset import RuleSet, compile_documents
from crmflow.rules.yamlload import Document
from tests.test_properties import conditions, records, scalars, values

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
STAGES = ["won", "lost", "open"]

# Conditions that pin `stage` to a string, so buckets get dispatched, mixed with anything.
pinned = st.one_of(
    st.sampled_from(STAGES).map(lambda s: {"stage": s}),
    st.sampled_from(STAGES).map(lambda s: {"stage": {"changed_to": s}}),
)
workflow_conditions = st.one_of(
    st.none(),
    conditions,
    st.tuples(pinned, conditions).map(lambda pair: {"all": list(pair)}),
    st.tuples(pinned, st.lists(conditions, max_size=2)).map(lambda p: [p[0], *p[1]]),
    pinned,
)
triggers = st.one_of(
    st.sampled_from(["created", "updated", "deleted"]).map(lambda kind: {"on": kind}),
    st.lists(st.sampled_from(["created", "updated", "deleted"]), min_size=1, unique=True).map(
        lambda kinds: {"on": kinds}
    ),
    st.just({"on": "updated", "fields": ["stage"]}),
    st.just({"on": ["created", "updated"], "ignore_actors": ["bot"]}),
)
stage_values = st.one_of(st.sampled_from([*STAGES, None, 1, True, ""]), values)


def _rules(specs: list[tuple[Any, Any]]) -> RuleSet:
    docs = []
    for i, (trigger, condition) in enumerate(specs):
        data: dict[str, Any] = {
            "id": f"w{i}",
            "entity": "deal",
            "trigger": trigger if isinstance(trigger, dict) else {"on": trigger},
            "actions": [{"warn": "x"}],
        }
        if condition is not None:
            data["conditions"] = condition
        docs.append(Document("m.yaml", i, data))
    return compile_documents(docs, Config())


def _slow(rules: RuleSet, event: Event) -> list[str]:
    """The workflows that match, each checked alone by its own closures."""
    facts = event.facts(event.at or NOW, UTC)
    return [
        e.workflow.id
        for e in rules.entries(event.entity, event.event)
        if e.reacts
        and e.workflow.trigger.reject(facts) is None
        and e.workflow.condition.check(facts)
    ]


def _lone_reason(rules: RuleSet, rule: str, facts: Any) -> str | None:
    """What one workflow says alone: None when it matches, else its reason."""
    workflow = rules.by_id[rule]
    rejected = workflow.trigger.reject(facts)
    if rejected is not None:
        return rejected
    if workflow.condition.check(facts):
        return None
    return workflow.condition.explain(facts).reason()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(triggers, workflow_conditions), min_size=1, max_size=8),
    st.sampled_from(["created", "updated", "deleted"]),
    records,
    st.one_of(st.none(), records),
    stage_values,
    stage_values,
    st.one_of(st.none(), scalars, st.just("bot")),
)
def test_matching_equals_the_per_workflow_evaluation(
    specs: list[tuple[Any, Any]],
    kind: str,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
    stage: Any,
    old_stage: Any,
    actor: Any,
) -> None:
    rules = _rules(specs)
    record = dict(record, stage=stage)
    if previous is not None:
        previous = dict(previous, stage=old_stage)
    event = Event("deal", kind, record, previous, actor)
    assert Evaluator(rules, UTC).matching(event, NOW) == _slow(rules, event)


def test_equality_on_one_field_is_dispatched_through_a_dictionary() -> None:
    rules = _rules([("updated", {"stage": f"s{i}", "amount": {"gt": i}}) for i in range(200)])
    match = Evaluator(rules, UTC).matcher("deal", "updated")
    assert match.dispatch == "stage"  # type: ignore[attr-defined]
    assert len(match.table) == 200  # type: ignore[attr-defined]
    evaluator = Evaluator(rules, UTC)
    event = Event("deal", "updated", {"stage": "s150", "amount": 500}, {})
    assert evaluator.matching(event, NOW) == ["w150"] == _slow(rules, event)
    assert evaluator.matching(Event("deal", "updated", {"stage": 5}, {}), NOW) == []


class CountingRelated:
    """Related records from nowhere, counting how often a condition asks."""

    def __init__(self) -> None:
        self.asked = 0

    def value(
        self, entity: str, prefix: tuple[str, ...], record: dict[str, Any], rest: tuple[str, ...]
    ) -> Any:
        self.asked += 1
        return "Acme"

    def relation_entity(self, entity: str, name: str) -> str | None:
        return "company"

    def load(self, entity: str, record: dict[str, Any], name: str) -> Any:
        return {"name": "Acme"}


def test_a_costly_clause_shared_by_many_workflows_runs_once_per_event() -> None:
    rules = _rules([("created", {"company.name": "Acme", "amount": {"gt": i}}) for i in range(50)])
    related = CountingRelated()
    evaluator = Evaluator(rules, UTC, related=lambda: related)
    event = Event("deal", "created", {"amount": 10}, None)
    assert evaluator.matching(event, NOW) == [f"w{i}" for i in range(10)]
    assert related.asked == 1


def test_relative_dates_follow_the_moment_of_each_event() -> None:
    rules = _rules([("created", {"due": {"before": "-14d"}})])
    evaluator = Evaluator(rules, UTC)
    event = Event("deal", "created", {"due": "2026-11-01T00:00:00Z"}, None)
    assert evaluator.matching(event, NOW) == ["w0"]
    assert evaluator.matching(event, datetime(2026, 11, 10, tzinfo=UTC)) == []
    assert evaluator.matching(event, NOW) == ["w0"]


def test_workflow_text_never_becomes_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = f"'); open({str(marker)!r}, 'w') #"
    rules = _rules(
        [
            ("created", {"stage": payload}),
            ("created", {f"na'me{payload}": {"in": [payload, "x"]}}),
            ("created", {"name": {"contains": payload}, "stage": payload}),
        ]
    )
    evaluator = Evaluator(rules, UTC)
    hit = Event("deal", "created", {"stage": payload, "name": f"a{payload}b"}, None)
    assert evaluator.matching(hit, NOW) == ["w0", "w2"] == _slow(rules, hit)
    other = Event("deal", "created", {f"na'me{payload}": "x"}, None)
    assert evaluator.matching(other, NOW) == ["w1"] == _slow(rules, other)
    assert not marker.exists()


def test_date_triggers_and_cooldowns_are_judged_by_the_evaluator() -> None:
    docs = [
        Document(
            "c.yaml",
            0,
            {
                "id": "cool",
                "entity": "deal",
                "trigger": {"on": "updated"},
                "cooldown": "1d",
                "conditions": {"stage": "won"},
                "actions": [{"warn": "x"}],
            },
        )
    ]
    rules = compile_documents(docs, Config())
    evaluator = Evaluator(rules, UTC)
    event = Event("deal", "updated", {"id": 1, "stage": "won"}, {"id": 1, "stage": "open"})
    assert evaluator.matching(event, NOW) == ["cool"]
    evaluator.evaluate(event, NOW)  # fires: the cooldown starts
    assert evaluator.matching(event, NOW) == []


def test_costly_clauses_of_different_workflows_are_kept_apart() -> None:
    # Each workflow numbers its clauses from 1: sharing must go by what a clause tests.
    rules = _rules(
        [
            ({"on": "created"}, {"amount": {"after": "2027-01-01"}}),
            ({"on": "created"}, {"amount": {"empty": True}}),
            ({"on": "created"}, {"amount": {"empty": True}}),
        ]
    )
    event = Event("deal", "created", {}, None)
    assert Evaluator(rules, UTC).matching(event, NOW) == ["w1", "w2"] == _slow(rules, event)


# Shapes the first property test rarely makes: equality spread over several fields (the
# dispatch picks one), paths into embedded records, relative dates on datetimes and ISO
# strings, `any` groups, identity operands (null, true, false).
SPREAD_FIELDS = ["stage", "country", "tier", "company.country"]
moments = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 9, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    st.datetimes(min_value=datetime(2026, 9, 1), max_value=datetime(2027, 1, 1)),
    st.datetimes(
        min_value=datetime(2026, 9, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    values,
)
spread_values = st.one_of(st.sampled_from(["won", "DE", "gold", None, True, False, 1]), values)
spread_scalars = st.one_of(st.sampled_from(["won", "DE", "gold", None, True, False, 1]), scalars)
spread_clause = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(SPREAD_FIELDS), spread_scalars),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        st.sampled_from(SPREAD_FIELDS),
        st.sampled_from(["eq", "ne", "changed_to", "changed_from"]),
        spread_scalars,
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        st.sampled_from(SPREAD_FIELDS),
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(["won", "DE", "gold", 1, None]), max_size=3),
    ),
    st.builds(
        lambda f, op, d: {f: {op: d}},
        st.sampled_from(["due", "company.founded"]),
        st.sampled_from(["before", "after"]),
        st.sampled_from(["-14d", "+2h", "-30d", "2026-11-01"]),
    ),
    st.builds(
        lambda f, op, n: {f: {op: n}},
        st.sampled_from(["amount", "company.size"]),
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.integers(-5, 5),
    ),
)
spread_conditions = st.recursive(
    spread_clause,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
spread_records = st.fixed_dictionaries(
    {},
    optional={
        "stage": spread_values,
        "country": spread_values,
        "tier": spread_values,
        "amount": st.one_of(st.integers(-6, 6), values),
        "due": moments,
        "company": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "country": spread_values,
                    "size": st.integers(-6, 6),
                    "founded": moments,
                },
            ),
            values,
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(triggers, spread_conditions), min_size=1, max_size=10),
    st.sampled_from(["created", "updated", "deleted"]),
    spread_records,
    st.one_of(st.none(), spread_records),
)
def test_matching_equals_the_per_workflow_evaluation_on_spread_shapes(
    specs: list[tuple[Any, Any]],
    kind: str,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
) -> None:
    rules = _rules(specs)
    event = Event("deal", kind, record, previous)
    assert Evaluator(rules, UTC).matching(event, NOW) == _slow(rules, event)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(triggers, spread_conditions), min_size=1, max_size=6),
    st.sampled_from(["created", "updated", "deleted"]),
    spread_records,
    st.one_of(st.none(), spread_records),
)
def test_plans_say_what_each_workflow_said_alone(
    specs: list[tuple[Any, Any]],
    kind: str,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
) -> None:
    # The evaluator takes the matcher's word on what matches and asks the others only
    # for their reason: each decision and reason is the one a lone check gives.
    rules = _rules(specs)
    event = Event("deal", kind, record, previous)
    plan = Evaluator(rules, UTC, seed=1).evaluate(event, NOW)
    facts = event.facts(NOW, UTC)
    for rule in plan.rules:
        workflow = rules.by_id[rule.rule]
        rejected = workflow.trigger.reject(facts)
        alone = rejected is None and workflow.condition.check(facts)
        assert rule.matched == alone
        if not alone and rejected is None:
            assert rule.reason == workflow.condition.explain(facts).reason()


def test_a_bucket_reads_a_field_only_when_a_clause_needs_it() -> None:
    rules = _rules([("created", {"stage": "won", "amount": {"gt": i}}) for i in range(3)])
    record = CountingRecord(stage="lost", amount=5)
    assert Evaluator(rules, UTC).matching(Event("deal", "created", record, None), NOW) == []
    assert record.reads == {"stage": 1}


class CountingRecord(dict[str, Any]):
    """A record that counts which fields are read."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(fields)
        self.reads: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(triggers, workflow_conditions), min_size=1, max_size=8),
    st.sampled_from(["created", "updated", "deleted"]),
    records,
    st.one_of(st.none(), records),
    stage_values,
    stage_values,
    st.one_of(st.none(), scalars, st.just("bot")),
)
def test_compiled_decisions_say_what_each_workflow_says_alone(
    specs: list[tuple[Any, Any]],
    kind: str,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
    stage: Any,
    old_stage: Any,
    actor: Any,
) -> None:
    # One pass decides every workflow and words the reasons of those that do not fire:
    # the same decision and the same words as each workflow's own check and explanation,
    # in full plans and in brief ones, and the raw mapping matches as the Event does.
    rules = _rules(specs)
    record = dict(record, stage=stage)
    if previous is not None:
        previous = dict(previous, stage=old_stage)
    event = Event("deal", kind, record, previous, actor)
    facts = event.facts(NOW, UTC)
    plan = Evaluator(rules, UTC, seed=1).evaluate(event, NOW)
    entries = rules.entries("deal", kind)
    for entry, rule in zip(entries, plan.rules, strict=True):
        said = None if rule.matched else rule.reason
        if entry.reacts:
            assert said == _lone_reason(rules, rule.rule, facts)
        else:
            assert said == entry.static_reason
    _, brief = Evaluator(rules, UTC, seed=1).evaluate_brief(event, NOW)
    assert [d if type(d) is tuple else d.to_json() for d in brief] == [
        (r.rule, r.reason) if not r.matched else r.to_json() for r in plan.rules
    ]
    raw = {"entity": "deal", "event": kind, "record": record, "previous": previous, "actor": actor}
    evaluator = Evaluator(rules, UTC)
    assert evaluator.matching_raw(raw, NOW) == evaluator.matching(event, NOW) == _slow(rules, event)


def test_brief_plans_reuse_the_static_reasons_of_triggers_that_do_not_take_the_event() -> None:
    rules = _rules([("created", {"stage": "won"}), ("updated", {"stage": "won"})])
    event = Event("deal", "created", {"stage": "lost"}, None)
    at, first = Evaluator(rules, UTC).evaluate_brief(event, NOW)
    assert at == NOW
    assert first == [
        ("w0", "stage eq won: was lost"),
        ("w1", "trigger on updated: reacts to updated, not created"),
    ]


def test_raw_mappings_match_as_their_events_do() -> None:
    rules = _rules([("created", {"due": {"before": "-14d"}}), ("updated", {"stage": "won"})])
    evaluator = Evaluator(rules, UTC)
    record = {"due": "2026-11-01T00:00:00Z"}
    raw: dict[str, Any] = {"entity": "deal", "event": "created", "record": record}
    assert evaluator.matching_raw(raw, NOW) == ["w0"]
    # `at` is the event's moment, as a datetime or as the ISO string of the JSON.
    assert evaluator.matching_raw(dict(raw, at="2026-11-10T00:00:00Z"), NOW) == []
    assert evaluator.matching_raw(dict(raw, at=datetime(2026, 11, 10, tzinfo=UTC)), NOW) == []
    assert evaluator.matching_raw({"entity": "deal", "event": "deleted", "record": {}}, NOW) == []
