"""What compiled rules hold: equal parts of a load shared, one copy of each action's
parameters, and the memory of 1,000 workflows under its bound, with no answer changed."""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from crmflow.config import Config
from crmflow.rules.compiler import Shared, compile_workflow
from crmflow.rules.conditions import (
    AllOf,
    ClauseTable,
    Condition,
    ConditionCompiler,
    Facts,
    FieldClause,
    value_key,
)
from crmflow.rules.ruleset import compile_documents, load_ruleset
from crmflow.rules.templates import Template, compile_tree, source_tree
from crmflow.rules.yamlload import Document
from tests.test_properties import conditions, records

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
MB = 1024 * 1024


def _doc(i: int, condition: Any, actions: Any = None, trigger: Any = None) -> Document:
    data: dict[str, Any] = {
        "id": f"w{i}",
        "entity": "deal",
        "trigger": trigger or {"on": ["created", "updated"]},
        "actions": actions or [{"warn": "x"}],
    }
    if condition is not None:
        data["conditions"] = condition
    return Document("m.yaml", i, data)


def _clauses(condition: Condition) -> list[FieldClause]:
    if isinstance(condition, FieldClause):
        return [condition]
    children = getattr(condition, "children", ())
    return [c for child in children for c in _clauses(child)]


def test_equal_clauses_and_triggers_of_a_load_are_one_object() -> None:
    condition = [{"stage": "won"}, {"stage": {"changed_to": "won"}}]
    rules = compile_documents([_doc(0, condition), _doc(1, condition)], Config())
    first, second = rules.workflows
    assert [id(c) for c in _clauses(first.condition)] == [id(c) for c in _clauses(second.condition)]
    assert first.trigger is second.trigger
    # Apart, the same workflows make objects of their own.
    alone = compile_workflow(_doc(0, condition), UTC)
    assert _clauses(alone.condition)[0] is not _clauses(first.condition)[0]


def test_change_clauses_keep_their_number_in_their_workflow() -> None:
    # Kept results of change clauses are stored with pending actions by uid: every
    # clause still takes a number, so a change clause's uid is where it stands.
    rules = compile_documents(
        [
            _doc(0, [{"stage": {"changed_to": "won"}}]),
            _doc(1, [{"amount": {"gt": 5}}, {"stage": {"changed_to": "won"}}]),
        ],
        Config(),
    )
    (change_a,) = _clauses(rules.workflows[0].condition)
    value_b, change_b = _clauses(rules.workflows[1].condition)
    assert (change_a.uid, change_b.uid, value_b.uid) == (1, 2, 0)
    assert change_a is not change_b
    assert [c.uid for c in rules.workflows[1].condition.change_clauses()] == [2]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (0, False),
        ("1", 1),
        (0.0, -0.0),
        ([1, 2], [2, 1]),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        (None, "null"),
        ([1], (1,)),
    ],
)
def test_values_that_differ_in_a_workflow_have_keys_that_differ(a: Any, b: Any) -> None:
    assert value_key(a) != value_key(b)
    assert value_key(a) == value_key(a)


def test_values_without_a_faithful_key_are_not_shared() -> None:
    nan = float("nan")
    assert value_key(nan) is None
    assert value_key([1, nan]) is None
    assert value_key({"a": [nan]}) is None
    assert value_key(object()) is None
    table = ClauseTable(UTC)
    one = ConditionCompiler(UTC, table).compile({"amount": {"in": [1, nan]}})
    two = ConditionCompiler(UTC, table).compile({"amount": {"in": [1, nan]}})
    assert one is not two


def test_a_table_serves_one_time_zone() -> None:
    with pytest.raises(ValueError, match="one time zone"):
        ConditionCompiler(ZoneInfo("Europe/Berlin"), ClauseTable(UTC))
    with pytest.raises(ValueError, match="one time zone"):
        compile_workflow(_doc(0, None), ZoneInfo("Europe/Berlin"), Shared(UTC))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(conditions, min_size=1, max_size=4),
    records,
    st.one_of(st.none(), records),
    st.sampled_from(["created", "updated", "deleted"]),
)
def test_shared_clauses_answer_as_each_workflow_alone(
    specs: list[Any], record: dict[str, Any], previous: dict[str, Any] | None, event: str
) -> None:
    # Each condition twice and mixed with the others: every clause has equal ones.
    docs = [_doc(i, spec) for i, spec in enumerate(specs + specs[::-1])]
    shared = compile_documents(docs, Config()).workflows
    facts = Facts("deal", event, record, previous, NOW, UTC)
    for doc, workflow in zip(docs, shared, strict=True):
        alone = compile_workflow(doc, UTC).condition
        together = workflow.condition
        assert together.check(facts) is alone.check(facts)
        assert together.explain(facts) == alone.explain(facts)
        assert together.reason(facts) == alone.reason(facts)
        assert [c.uid for c in together.change_clauses()] == [c.uid for c in alone.change_clauses()]
        kept = {c.uid: not c.check(facts) for c in alone.change_clauses()}
        later = Facts("deal", event, record, previous, NOW, UTC, kept=kept)
        assert together.check(later) is alone.check(later)


def test_actions_keep_one_copy_of_their_parameters() -> None:
    notify = {"to": ["owner", "{{ deal.manager }}"], "subject": "Won: {{ deal.name }}"}
    plain = {"to": "team@example.org", "subject": "Won"}
    html = {"to": "a@example.org", "subject": "s", "html": "<b>fixed</b>"}
    workflow = compile_workflow(
        _doc(
            0,
            None,
            [{"notify": notify}, {"notify": plain}, {"email": html}, {"set_stage": "won"}],
        ),
        UTC,
    )
    templated, untemplated, marked_up, stage = workflow.actions
    assert templated.raw == notify
    assert type(templated.params["subject"]) is Template
    assert templated.params["to"][0] == "owner"
    # No template: the parameters as written are the compiled ones.
    assert untemplated.params is untemplated.raw
    assert untemplated.raw == plain
    # HTML keys are templates even without markers (they escape what they insert).
    assert type(marked_up.params["html"]) is Template
    assert marked_up.raw == html
    assert stage.raw == {"stage": "won"}
    assert stage.params is stage.raw


def test_source_tree_undoes_compile_tree() -> None:
    tree = {"a": ["{{ deal.id }}", "x", {"b": "{% if 1 %}y{% endif %}"}], "c": 1, "d": None}
    compiled = compile_tree(tree, frozenset({"c"}))
    assert compiled is not tree
    assert source_tree(compiled) == tree
    fixed = {"a": ["x", {"b": "y"}], "c": 1}
    assert compile_tree(fixed) is fixed
    assert source_tree(fixed) is fixed


def test_static_reasons_are_one_string_per_wording() -> None:
    docs = [_doc(i, None, trigger={"on": "created"}) for i in range(3)]
    rules = compile_documents(docs, Config())
    entries = rules.entries("deal", "updated")
    assert [e.reacts for e in entries] == [False] * 3
    assert {id(e.static_reason) for e in entries} == {id(entries[0].static_reason)}
    assert entries[0].static_reason == "trigger on created: reacts to created, not updated"


def _write_workflows(folder: Path, count: int) -> None:
    """Workflows as the loading benchmark makes them: 2-4 clauses of a CRM's usual
    kinds, some in `any` groups, and a notify with a template of its own."""
    rng = random.Random(3)
    stages = ["new", "open", "qualified", "proposal", "won", "lost"]
    countries = ["DE", "FR", "AT", "NL", "US", "GB", "IT", "ES"]
    words = ["acme", "nord", "sun", "berg", "delta", "omega", "alpha", "metro"]

    def clause() -> dict[str, Any]:
        kind = rng.choice(["num", "eq", "in", "contains", "changed_to", "date"])
        if kind == "num":
            return {rng.choice(["amount", "score", "hours"]): {"gt": rng.randint(0, 1000)}}
        if kind == "in":
            return {"country": {"in": rng.sample(countries, 3)}}
        if kind == "contains":
            return {"name": {"contains": rng.choice(words)}}
        if kind == "date":
            return {"last_activity_at": {"before": f"-{rng.randint(1, 60)}d"}}
        if kind == "changed_to":
            return {"stage": {"changed_to": rng.choice(stages)}}
        return {"stage": rng.choice(stages)}

    for i in range(count):
        parts = [clause() for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.3 and len(parts) >= 3:
            parts.append({"any": [parts.pop(), parts.pop()]})
        doc = {
            "id": f"w{i}",
            "entity": rng.choice(["deal", "lead", "company", "project", "task"]),
            "trigger": {"on": sorted(rng.sample(["created", "updated", "deleted"], 2))},
            "conditions": parts,
            "actions": [
                {"notify": {"to": "team@example.org", "subject": f"{{{{ record.name }}}} ({i})"}}
            ],
        }
        (folder / f"w{i}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def test_compiled_rules_of_1000_workflows_hold_under_5_mb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As bench/loading.py measures it: a first load fills what imports make lazily, the
    # second is traced. Deterministic: the same files, the same objects every run (the
    # rules held 5.7 MB before equal parts were shared and objects slotted; about 2.4 now).
    monkeypatch.setenv("CRMFLOW_CACHE_DIR", "")
    _write_workflows(tmp_path, 1000)
    rules = load_ruleset([tmp_path], Config())
    del rules
    gc.collect()
    tracemalloc.start()
    try:
        rules = load_ruleset([tmp_path], Config())
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(rules) == 1000
    assert any(isinstance(w.condition, AllOf) for w in rules.workflows)
    assert held < 5 * MB, f"{held / MB:.2f} MB"
