from __future__ import annotations

import math
from pathlib import Path

import pytest

from crmflow.errors import YamlError
from crmflow.rules.yamlload import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_DIGITS,
    MAX_NODES,
    load_file,
    load_text,
)


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


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_expansion_is_bounded_and_names_the_entry_expanding() -> None:
    # 9 ** 9 nodes: far over the limit, but the error comes before they are built.
    with pytest.raises(YamlError) as info:
        load_text(_bomb(9), "b.yaml")
    assert str(info.value) == (
        f"b.yaml:6:5: CF004 document has more than {MAX_NODES:,} nodes"
        " once aliases are expanded (the limit)"
    )


def test_aliases_within_the_limit_still_expand() -> None:
    data = load_text(_bomb(4))[0].data
    assert len(data["a3"]) == 9 and data["a3"][0][0][0] == ["x"] * 9


def test_documents_with_too_many_nodes_stop_while_composing() -> None:
    with pytest.raises(YamlError, match=f"CF004 document has more than {MAX_NODES:,} nodes"):
        load_text("[" + "1," * MAX_NODES + "1]\n")
    # The count is per document: many documents of a stream each have their own.
    stream = "---\n".join(["[" + "1," * (MAX_NODES // 2) + "1]\n"] * 3)
    assert len(load_text(stream)) == 3


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 100_000 + "]" * 100_000,
        "a: " + "{b: " * 5_000 + "}" * 5_000,
        "".join(" " * i + "k:\n" for i in range(MAX_DEPTH + 1)),
        # Each anchor is shallow; only the expansion nests deeper than the limit.
        "\n".join(
            ["a0: &a0 [x]"] + [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 12)]
        ),
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "aliases"],
)
def test_nesting_is_bounded_without_recursion_errors(text: str) -> None:
    with pytest.raises(YamlError, match=f"CF004 document nests deeper than {MAX_DEPTH} levels"):
        load_text(text)


def test_nesting_up_to_the_limit_loads() -> None:
    data = load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)[0].data
    for _ in range(MAX_DEPTH - 1):
        data = data[0]
    assert data == []


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("9" * MAX_INT_DIGITS, int("9" * MAX_INT_DIGITS)),
        ("0" * 6000 + "5", 5),
        ("-0", 0),
        ("+007", 7),
    ],
)
def test_integers_up_to_the_limit_load(literal: str, expected: int) -> None:
    assert load_text(f"v: {literal}\n")[0].data["v"] == expected


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("9" * (MAX_INT_DIGITS + 1), f"CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
        ("-" + "1" * 10_000, f"CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
        ("0x" + "f" * 4000, f"CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
        ("!!int " + "1" * 5000, f"CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
        ("1e999", "CF004 number '1e999' is out of range"),
        ("-1e999", "CF004 number '-1e999' is out of range"),
    ],
)
def test_out_of_range_numbers_are_errors(literal: str, message: str) -> None:
    with pytest.raises(YamlError) as info:
        load_text(f"id: x\nv: {literal}\n", "n.yaml")
    assert str(info.value).startswith(f"n.yaml:2:4: {message}")


def test_forbidden_characters_are_one_line_with_their_position() -> None:
    with pytest.raises(YamlError) as info:
        load_text("id: w\nentity: de\x00al\n", "z.yaml")
    assert str(info.value) == "z.yaml:2:11: CF001 invalid YAML: character U+0000 is not allowed"


def test_files_name_the_first_byte_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_bytes(b"id: w\nentity: d\xe9al\n")
    with pytest.raises(YamlError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:2:10: CF001 file is not UTF-8 text"


def test_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(YamlError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:1:1: CF004 file is larger than 10 MiB (the limit)"
    path.write_bytes(b"#" * MAX_FILE_BYTES)
    assert load_file(path) == []


@pytest.mark.parametrize(
    "text",
    [
        "- " * 100_000 + "x",
        "- " * 990 + "[" * 990 + "]" * 990,
        "a:\n" + "- " * 3_000 + "x",
        "[" * 900 + "]" * 900,
    ],
    ids=["block-sequences", "mixed", "under-a-key", "within-libyamls-bound"],
)
def test_deep_nesting_in_every_form_is_a_finding(text: str) -> None:
    with pytest.raises(YamlError, match=f"CF004 document nests deeper than {MAX_DEPTH} levels"):
        load_text(text)


def test_positions_in_long_lists_and_mappings() -> None:
    items = "".join(f"  - {{name: n{i}, value: {i}}}\n" for i in range(500))
    keys = "".join(f"  k{i}: {i}\n" for i in range(500))
    doc = load_text(f"items:\n{items}keys:\n{keys}", "l.yaml")[0]
    assert str(doc.locate(("items", 0, "value"))) == "l.yaml:2:23"
    assert str(doc.locate(("items", 499, "name"))) == "l.yaml:501:12"
    assert str(doc.locate(("items", 500))) == "l.yaml:2:3"  # past the end: its parent
    assert str(doc.locate(("keys", "k499"))) == "l.yaml:1002:9"
    assert str(doc.locate(("keys", "k250"), key=True)) == "l.yaml:753:3"
    assert str(doc.locate(("keys", "nope"))) == "l.yaml:503:3"


def test_positions_survive_data_that_changed_shape() -> None:
    doc = load_text("a: {b: 1}\nc: 2\n", "s.yaml")[0]
    doc.data["a"]["new"] = 5
    doc.data["z"] = {"q": 1}
    assert str(doc.locate(("a", "b"))) == "s.yaml:1:8"
    assert str(doc.locate(("a", "new"))) == "s.yaml:1:4"
    assert str(doc.locate(("z", "q"))) == "s.yaml:1:1"


def test_a_recursive_alias_deep_in_a_document_is_named() -> None:
    with pytest.raises(YamlError, match="recursive alias") as info:
        load_text("a:\n  b: &x {c: [1, *x]}\n", "r.yaml")
    assert str(info.value).startswith("r.yaml:2:6:")


def _held_bytes(text: str) -> int:
    """Memory the loaded documents keep (data and positions), measured with tracemalloc.

    Only what the loader's own code allocated counts: a thread another test left behind
    (a server winding down) may allocate meanwhile, and tracemalloc sees every thread.
    """
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        docs = load_text(text)
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*/crmflow/rules/yamlload.py")]
        )
        held = sum(stat.size for stat in snapshot.statistics("filename"))
        assert docs
    finally:
        tracemalloc.stop()
    return held


def test_memory_is_linear_in_the_file_and_small() -> None:
    workflow = (
        "id: w{n}\nentity: deal\ntrigger: {{on: updated, fields: [stage]}}\n"
        "conditions:\n  stage: {{changed_to: won}}\n"
        "actions:\n  - notify: {{to: [owner], subject: 'Won: {{{{ deal.name }}}}'}}\n"
    )
    small = "---\n".join(workflow.format(n=n) for n in range(1_000))
    large = "---\n".join(workflow.format(n=n) for n in range(4_000))
    # Short texts are interned (sys.intern): once first, so the interpreter's table of
    # interned strings, whose size depends on every test before this one, does not grow
    # (and get counted) while measuring.
    load_text(large)
    held_small, held_large = _held_bytes(small), _held_bytes(large)
    # Four times the text holds four times the memory (give or take the steps in which
    # lists and dicts grow: 4.2 to 4.45 measured)...
    assert 3.5 < held_large / held_small < 4.8, (held_small, held_large)
    # ... and little of it: what PyYAML's own loader keeps is ~14x the text, without
    # positions; the positions used to add over 30x more.
    assert held_large < 20 * len(large), held_large / len(large)
