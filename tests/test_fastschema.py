"""The compiled schema check accepts exactly what jsonschema accepts, on our schemas.

schema_findings trusts `fastschema` to wave valid documents through without jsonschema,
so the two must agree on every document: the examples in rules/, the hostile corpus,
crmflow.yaml-shaped and test-file-shaped documents, and random mutations of all of them.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crmflow.errors import YamlError
from crmflow.rules.fastschema import (
    ANNOTATIONS,
    COMPILED,
    Unsupported,
    compile_schema,
    equal,
    keywords_of,
    unique,
)
from crmflow.rules.schema import PUBLISHED
from crmflow.rules.yamlload import is_test_file, load_file, load_text

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).parent / "hostile" / "yaml"

CONFIG = """\
crm: sqlite:///crm.db
state: sqlite:///.crmflow/state.db
rules: rules/
timezone: Europe/Berlin
poll_interval: 2s
email: {transport: smtp, host: mail.example.org, port: 587, from: a@example.org,
        username: crm, password_env: SMTP_PASSWORD, starttls: true}
webhooks: {allow: ["https://hooks.example.com/*"], secret_env: CRMFLOW_WEBHOOK_SECRET}
entities:
  deal:
    table: crm_lead
    columns: {amount: expected_revenue, stage: stage_name}
    deleted: {column: active, value: false}
    relations:
      company: {entity: company, key: partner_id}
      activities: {entity: activity, foreign_key: res_id}
"""


@cache
def checks(name: str) -> tuple[Any, Draft202012Validator]:
    schema = PUBLISHED[name]()
    return compile_schema(schema), Draft202012Validator(schema)


def agree(name: str, data: Any) -> bool:
    compiled, reference = checks(name)
    verdict = compiled(data)
    assert verdict == reference.is_valid(data), (name, data)
    return verdict


@cache
def corpus() -> dict[str, list[Any]]:
    """Real documents per schema: the examples, their test files, a configuration."""
    found: dict[str, list[Any]] = {"workflow": [], "test": [], "config": []}
    for path in sorted((ROOT / "rules").rglob("*.y*ml")):
        found["test" if is_test_file(path) else "workflow"] += [d.data for d in load_file(path)]
    found["config"] = [d.data for d in load_text(CONFIG)]
    for path in sorted(HOSTILE.iterdir()):
        try:
            docs = load_file(path)
        except YamlError:
            continue
        for name in found:
            found[name] += [d.data for d in docs]
    return found


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_keyword_of_our_schemas_is_compiled(name: str) -> None:
    used = keywords_of(PUBLISHED[name]())
    assert used - COMPILED - ANNOTATIONS == set()
    compile_schema(PUBLISHED[name]())  # and compiling finds no other form it cannot take


@pytest.mark.parametrize(
    "schema",
    [
        {"patternProperties": {"^x": {}}},
        {"unevaluatedProperties": False},
        {"$ref": "https://example.org/other.json"},
        {"$ref": "#/$defs/missing"},
        {"type": "decimal"},
        {"items": {"multipleOf": 2}},
    ],
)
def test_anything_else_is_refused_when_compiling(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        compile_schema(schema)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_examples_and_the_hostile_corpus_agree(name: str) -> None:
    documents = corpus()[name]
    assert documents
    verdicts = [agree(name, data) for data in documents]
    if name != "config":
        assert any(verdicts)  # the examples are valid, so both sides said yes to something


@pytest.mark.parametrize(
    ("one", "two", "same"),
    [
        (1, True, False),
        (0, False, False),
        (1, 1.0, True),
        ([1, "a"], [1.0, "a"], True),
        ({"a": [True]}, {"a": [1]}, False),
        ("1", 1, False),
    ],
)
def test_equality_is_jsonschemas(one: Any, two: Any, same: bool) -> None:
    assert equal(one, two) is same
    assert unique([one, two]) is not same


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "x", "deal", "created", "30s", "-7d", "09:00", "won", "a.b", "1y"])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "entity", "on", "to", "gt", "any", "values", "x"]) | st.text(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _paths(data: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*here, index))
    return found


def _mutate(data: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """`data` with one change at `path`: replaced, removed, or given an extra member."""
    if not path:
        return value
    copied = copy.deepcopy(data)
    parent = copied
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "remove":
        del parent[last]
    elif how == "extend" and isinstance(parent[last], dict):
        parent[last]["x_extra"] = value
    elif how == "extend" and isinstance(parent[last], list):
        parent[last].append(value)
    else:
        parent[last] = value
    return copied


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(PUBLISHED)),
    st.data(),
    st.sampled_from(["replace", "remove", "extend"]),
    json_values,
)
def test_mutated_documents_agree(name: str, data: st.DataObject, how: str, value: Any) -> None:
    document = data.draw(st.sampled_from(corpus()[name]))
    path = data.draw(st.sampled_from(_paths(document)))
    agree(name, _mutate(document, path, how, value))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PUBLISHED)), json_values)
def test_random_documents_agree(name: str, value: Any) -> None:
    agree(name, value)
