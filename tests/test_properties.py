"""Property-based tests: whatever values arrive, evaluation never raises."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event, read_events
from crmflow.rules.conditions import ConditionCompiler, Facts
from crmflow.rules.ruleset import compile_documents, load_documents
from crmflow.rules.validate import schema_findings
from crmflow.rules.yamlload import Document
from tests.conftest import ROOT

FIELDS = ["amount", "stage", "name", "tags", "due", "company"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["2026-11-22", "2026-11-22T10:00:00Z", "2026-13-45", "won", "", "-14d"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)
    ),
    max_leaves=6,
)
records = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)

OPERANDS: dict[str, Any] = {
    "eq": values,
    "ne": values,
    "changed_from": values,
    "changed_to": values,
    "gt": st.one_of(
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=5),
        st.just("2026-01-01"),
        st.just({"field": "amount"}),
    ),
    "gte": st.integers(),
    "lt": st.sampled_from(["2026-01-01T00:00:00Z", "m", 5]),
    "lte": st.floats(allow_nan=False),
    "in": st.lists(scalars, max_size=4),
    "not_in": st.lists(scalars, max_size=4),
    "contains": scalars,
    "matches": st.sampled_from(["^a", "\\d+", "(?i)won", ""]),
    "empty": st.booleans(),
    "changed": st.booleans(),
    "before": st.sampled_from(["-14d", "+2h", "2026-11-22", "2026-11-22T10:00:00+01:00", "P1Y"]),
    "after": st.sampled_from(["-1d", "2027-01-01"]),
}
clause = st.builds(
    lambda field, op_operand: {field: {op_operand[0]: op_operand[1]}},
    st.sampled_from([*FIELDS, "company.name", "tags.x"]),
    st.sampled_from(sorted(OPERANDS)).flatmap(lambda op: st.tuples(st.just(op), OPERANDS[op])),
)
conditions = st.recursive(
    clause,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=5,
)
events = st.sampled_from(["created", "updated", "deleted", "tick"])


@settings(max_examples=400, deadline=None)
@given(conditions, records, st.one_of(st.none(), records), events)
def test_conditions_never_raise(
    spec: dict[str, Any], record: dict[str, Any], previous: dict[str, Any] | None, event: str
) -> None:
    doc = Document(
        "c.yaml",
        0,
        {
            "id": "p",
            "entity": "deal",
            "trigger": {"on": "created"},
            "conditions": spec,
            "actions": [{"warn": "x"}],
        },
    )
    assert schema_findings(doc) == []  # the strategies only build valid conditions
    compiled = ConditionCompiler(UTC).compile(spec)
    facts = Facts("deal", event, record, previous, datetime(2026, 11, 22, tzinfo=UTC), UTC)
    result = compiled.check(facts)
    trace = compiled.explain(facts)
    assert trace.ok is result
    if not result:  # the short way to the reason says what the whole trace says
        assert compiled.reason(facts) == trace.reason()


_RULES = compile_documents(load_documents([ROOT / "rules"]).documents, Config())
_ENTITIES = sorted({w.entity for w in _RULES.workflows})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_ENTITIES), events, records, st.one_of(st.none(), records), scalars)
def test_example_workflows_evaluate_any_record(
    entity: str, event: str, record: dict[str, Any], previous: dict[str, Any] | None, actor: Any
) -> None:
    evaluator = Evaluator(_RULES, UTC, seed=1)
    plan = evaluator.evaluate(
        Event(entity, event, record, previous, actor), datetime(2026, 11, 22, tzinfo=UTC)
    )
    json.dumps(plan.to_json(), default=str)
    assert {r.rule for r in plan.rules} == {w.id for w in _RULES.workflows if w.entity == entity}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.builds(
                json.dumps,
                st.dictionaries(
                    st.sampled_from(["entity", "event", "record", "previous", "at", "actor"]),
                    values,
                ),
            ),
        ),
        max_size=6,
    )
)
def test_any_input_stream_yields_events_or_errors(lines: list[str]) -> None:
    for item in read_events(io.StringIO("\n".join(lines))):
        assert item is not None
