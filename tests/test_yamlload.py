from __future__ import annotations

import math

import pytest

from crmflow.errors import YamlError
from crmflow.rules.yamlload import load_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on", "on"),
        ("yes", "yes"),
        ("No", "No"),
        ("true", True),
        ("False", False),
        ("9:00", "9:00"),
        ("010", 10),
        ("0o17", 15),
        ("0x1F", 31),
        ("-12", -12),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("2026-11-22", "2026-11-22"),
        ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z"),
        ("~", None),
        ("null", None),
        ("", None),
        ("'010'", "010"),
        ('"true"', "true"),
        ("!!str 12", "12"),
        ("1_000", "1_000"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, expected: object) -> None:
    value = load_text(f"v: {text}\n")[0].data["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_special_floats() -> None:
    data = load_text("a: .inf\nb: -.Inf\nc: .nan\n")[0].data
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])


def test_on_key_stays_a_string() -> None:
    assert load_text("trigger: {on: created}\n")[0].data == {"trigger": {"on": "created"}}


def test_positions_of_values_and_keys() -> None:
    doc = load_text("id: x\ntrigger:\n  on: [created, updated]\n", "f.yaml")[0]
    assert str(doc.locate(("trigger", "on", 1))) == "f.yaml:3:17"
    assert str(doc.locate(("trigger", "on"), key=True)) == "f.yaml:3:3"
    # A path that does not exist falls back to its nearest parent.
    assert str(doc.locate(("trigger", "fields", 0))) == "f.yaml:3:3"


def test_multi_document_streams_keep_each_documents_positions() -> None:
    docs = load_text("id: a\n---\n\n---\nid: b\nentity: deal\n", "m.yaml")
    assert [d.data["id"] for d in docs] == ["a", "b"]
    assert str(docs[1].locate(("entity",))) == "m.yaml:6:9"


def test_duplicate_keys_are_rejected_with_both_positions() -> None:
    with pytest.raises(YamlError) as info:
        load_text("id: a\nentity: deal\nid: b\n", "d.yaml")
    assert str(info.value) == "d.yaml:3:1: CF002 duplicate key 'id' (first defined at line 1)"


def test_nested_duplicate_keys_are_rejected() -> None:
    with pytest.raises(YamlError, match="duplicate key 'on'"):
        load_text("trigger:\n  on: created\n  on: updated\n")


def test_syntax_errors_name_the_position() -> None:
    with pytest.raises(YamlError) as info:
        load_text("id: a\nactions: [\n", "s.yaml")
    assert str(info.value).startswith("s.yaml:3:1: CF001 invalid YAML")


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(YamlError, match="keys must be strings"):
        load_text("1: a\n")


def test_unknown_tags_are_rejected() -> None:
    with pytest.raises(YamlError, match="unsupported tag"):
        load_text("a: !python/object foo\n")


def test_anchors_and_aliases_work_but_recursion_does_not() -> None:
    assert load_text("a: &x {b: 1}\nc: *x\n")[0].data == {"a": {"b": 1}, "c": {"b": 1}}
    with pytest.raises(YamlError, match="recursive"):
        load_text("a: &x [*x]\n")
