"""The operator table of SPEC §2, with its null and type rules, through compiled conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crmflow.rules.conditions import ConditionCompiler, Facts
from crmflow.rules.registry import OPERATORS
from crmflow.rules.schema import vocabulary

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
MISSING = object()


def holds(
    condition: dict[str, Any],
    record: dict[str, Any],
    previous: dict[str, Any] | None = None,
    event: str = "updated",
    tz: Any = UTC,
) -> bool:
    compiled = ConditionCompiler(tz).compile(condition)
    facts = Facts("deal", event, record, previous, NOW, tz)
    result = compiled.check(facts)
    # The explaining path must agree with the fast path.
    assert compiled.explain(facts).ok is result
    return result


CASES: list[tuple[str, Any, Any, bool]] = [
    # operator, operand, field value (MISSING: absent), expected
    ("eq", 5, 5, True),
    ("eq", 5, 5.0, True),
    ("eq", 5, "5", False),
    ("eq", 1, True, False),
    ("eq", True, True, True),
    ("eq", None, None, True),
    ("eq", None, MISSING, True),
    ("eq", None, 0, False),
    ("eq", "", None, False),
    ("eq", "won", "won", True),
    ("eq", [1, 2], [1, 2], True),
    ("ne", 5, 6, True),
    ("ne", 5, 5, False),
    ("ne", None, None, False),
    ("ne", None, MISSING, False),
    ("ne", 5, None, True),
    ("ne", 1, True, True),
    ("gt", 100000, 250000, True),
    ("gt", 100000, 100000, False),
    ("gt", 100000, 5000, False),
    ("gt", 100000, "250000", False),
    ("gt", 100000, None, False),
    ("gt", 100000, MISSING, False),
    ("gt", 0, True, False),
    ("gt", 1.5, 2, True),
    ("gte", 80, 80, True),
    ("gte", 80, 79.9, False),
    ("lt", 10, 9, True),
    ("lt", 10, None, False),
    ("lte", 10, 10, True),
    ("lte", "m", "a", True),
    ("gt", "b", "a", False),
    ("gt", "2026-01-01", "2026-02-01", True),
    ("gt", "2026-01-01", "2026-01-01T00:00:01Z", True),
    ("lt", "2026-01-01T00:00:00+01:00", "2025-12-31T23:30:00Z", False),
    ("gt", "2026-01-01", "not a date", False),
    ("gt", "2026-01-01", 20260101, False),
    ("in", ["won", "lost"], "won", True),
    ("in", ["won", "lost"], "open", False),
    ("in", [1, 2], "1", False),
    ("in", [1, 2], True, False),
    ("in", [None, "x"], None, True),
    ("in", [None], MISSING, True),
    ("in", ["a"], None, False),
    ("in", [True], True, True),
    ("in", [1.0], 1, True),
    ("not_in", ["won", "lost"], "open", True),
    ("not_in", ["won"], "won", False),
    ("not_in", ["a"], None, True),
    ("not_in", [None], None, False),
    ("contains", "ACME", "ACME GmbH", True),
    ("contains", "acme", "ACME GmbH", False),
    ("contains", "x", None, False),
    ("contains", "vip", ["vip", "eu"], True),
    ("contains", 3, [1, 2, 3], True),
    ("contains", 3, [1, 2, "3"], False),
    ("contains", 3, "123", False),
    ("contains", "1", 123, False),
    ("matches", r"^Q-\d{4}-", "Q-2026-031", True),
    ("matches", r"gmbh$", "ACME GmbH", False),
    ("matches", r"(?i)gmbh$", "ACME GmbH", True),
    ("matches", r"\d", 5, False),
    ("matches", r".*", None, False),
    # RE2 keeps `re.search` semantics: a match anywhere, inline flags, named groups.
    ("matches", r"gmbh", "ACME gmbh & co", True),
    ("matches", r"^gmbh", "ACME gmbh", False),
    ("matches", r"(?P<code>Q-\d+)$", "ref Q-7", True),
    ("matches", r"^.{3}$", "äöü", True),
    ("matches", r"x.y", "x\ud800y", True),
    ("matches", r"a", ["a"], False),
    ("matches", r"1", 1, False),
    ("matches", r"True", True, False),
    ("matches", r"(a+)+$", "a" * 40 + "!", False),
    ("empty", True, None, True),
    ("empty", True, MISSING, True),
    ("empty", True, "", True),
    ("empty", True, [], True),
    ("empty", True, 0, False),
    ("empty", True, False, False),
    ("empty", True, " ", False),
    ("empty", False, "x", True),
    ("empty", False, None, False),
    ("empty", False, [], False),
    ("before", "2026-12-01", "2026-11-30", True),
    ("before", "2026-12-01", "2026-12-01", False),
    ("before", "2026-12-01", "2026-11-30T23:59:59Z", True),
    ("before", "2026-12-01", None, False),
    ("before", "2026-12-01", "soon", False),
    ("before", "2026-12-01", 5, False),
    ("before", "-14d", "2026-11-01T00:00:00Z", True),
    ("before", "-14d", "2026-11-20T00:00:00Z", False),
    ("before", "-14d", "2026-11-08", True),
    ("before", "+2h", "2026-11-22T11:59:00Z", True),
    ("before", "+2h", "2026-11-22T12:01:00Z", False),
    ("after", "-1d", "2026-11-21T10:00:01Z", True),
    ("after", "-1d", "2026-11-21T09:59:59Z", False),
    ("after", "2026-11-22T09:00:00Z", "2026-11-22 09:30:00", True),
    ("after", "2026-11-22T09:00:00Z", "2026-11-22T09:30:00.5+00:00", True),
    ("after", "P1D", "2026-11-24T00:00:00Z", True),
    ("after", "2026-01-01", None, False),
]


@pytest.mark.parametrize(("op", "operand", "value", "expected"), CASES)
def test_value_operators(op: str, operand: Any, value: Any, expected: bool) -> None:
    record = {"id": 1} if value is MISSING else {"id": 1, "f": value}
    assert holds({"f": {op: operand}}, record) is expected


CHANGE_CASES: list[tuple[str, Any, Any, Any, bool]] = [
    # operator, operand, old, new, expected (updated event)
    ("changed", True, "a", "b", True),
    ("changed", True, "a", "a", False),
    ("changed", True, None, "a", True),
    ("changed", True, MISSING, None, False),
    ("changed", True, 1, 1.0, False),
    ("changed", True, 1, True, True),
    ("changed", False, "a", "a", True),
    ("changed", False, "a", "b", False),
    ("changed_to", "won", "negotiation", "won", True),
    ("changed_to", "won", "won", "won", False),
    ("changed_to", "won", "negotiation", "lost", False),
    ("changed_to", None, "x", None, True),
    ("changed_from", "negotiation", "negotiation", "won", True),
    ("changed_from", "negotiation", "proposal", "won", False),
    ("changed_from", None, None, "won", True),
    ("changed_from", None, MISSING, "won", True),
    ("changed_from", None, None, None, False),
]


@pytest.mark.parametrize(("op", "operand", "old", "new", "expected"), CHANGE_CASES)
def test_change_operators(op: str, operand: Any, old: Any, new: Any, expected: bool) -> None:
    previous = {"id": 1} if old is MISSING else {"id": 1, "f": old}
    record = {"id": 1} if new is MISSING else {"id": 1, "f": new}
    assert holds({"f": {op: operand}}, record, previous) is expected


@pytest.mark.parametrize("event", ["created", "deleted", "tick"])
@pytest.mark.parametrize(
    ("op", "operand"),
    [("changed", True), ("changed", False), ("changed_to", "won"), ("changed_from", None)],
)
def test_change_operators_are_false_without_an_update(event: str, op: str, operand: Any) -> None:
    assert holds({"f": {op: operand}}, {"f": "won"}, {"f": None}, event=event) is False


def test_change_operators_need_previous_values() -> None:
    assert holds({"f": {"changed": True}}, {"f": 1}, None) is False


def test_plain_scalars_mean_equality() -> None:
    assert holds({"stage": "won"}, {"stage": "won"})
    assert not holds({"stage": "won"}, {"stage": "lost"})
    assert holds({"x": None}, {})


def test_all_operators_of_a_field_must_hold() -> None:
    assert holds({"f": {"gt": 1, "lt": 10}}, {"f": 5})
    assert not holds({"f": {"gt": 1, "lt": 3}}, {"f": 5})


def test_combinators() -> None:
    record = {"a": 1, "b": 2}
    assert holds({"any": [{"a": 2}, {"b": 2}]}, record)
    assert not holds({"any": [{"a": 2}, {"b": 3}]}, record)
    assert holds({"all": [{"a": 1}, {"b": 2}]}, record)
    assert holds({"not": {"a": 2}}, record)
    assert not holds({"not": {"any": [{"a": 1}]}}, record)
    assert holds([{"a": 1}, {"not": {"b": 3}}], record)


def test_dotted_paths_follow_nested_objects() -> None:
    record = {"company": {"country": "FR", "owner": {"name": "Lena"}}, "contacts": [{"email": "a"}]}
    assert holds({"company.country": "FR"}, record)
    assert holds({"company.owner.name": {"matches": "^L"}}, record)
    assert holds({"company.missing.deeper": None}, record)
    assert holds({"contacts.email": {"contains": "a"}}, record)
    assert not holds({"company.country.x": "FR"}, record)


def test_comparing_two_fields() -> None:
    assert holds({"logged": {"gt": {"field": "estimate"}}}, {"logged": 9, "estimate": 8})
    assert not holds({"logged": {"gt": {"field": "estimate"}}}, {"logged": 8, "estimate": 8})
    assert not holds({"logged": {"gt": {"field": "estimate"}}}, {"logged": 9, "estimate": None})
    assert holds({"a": {"eq": {"field": "b"}}}, {"a": None})
    assert holds(
        {"end": {"gte": {"field": "start"}}}, {"start": "2026-01-01", "end": "2026-01-01T00:00:00Z"}
    )


def test_calendar_offsets_use_the_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 1 day before 2026-11-22T10:00Z in Berlin is 2026-11-21T11:00 local = 10:00Z
    assert holds({"f": {"after": "-1d"}}, {"f": "2026-11-21T10:00:01Z"}, tz=berlin)
    # A date-only value counts from midnight in the zone: 2026-11-22 00:00 Berlin = 21 23:00Z.
    assert holds({"f": {"before": "2026-11-21T23:30:00Z"}}, {"f": "2026-11-22"}, tz=berlin)
    assert not holds({"f": {"before": "2026-11-21T23:30:00Z"}}, {"f": "2026-11-22"})


def test_reasons_name_the_clause_and_the_value() -> None:
    compiled = ConditionCompiler(UTC).compile([{"amount": {"gt": 100000}}, {"stage": "won"}])
    facts = Facts("deal", "updated", {"amount": 5000}, {}, NOW, UTC)
    assert compiled.explain(facts).reason() == "amount gt 100000: was 5000"
    change = ConditionCompiler(UTC).compile({"stage": {"changed_to": "won"}})
    facts = Facts("deal", "updated", {"stage": "negotiation"}, {"stage": "negotiation"}, NOW, UTC)
    assert change.explain(facts).reason() == "stage changed_to won: was negotiation, unchanged"
    anyof = ConditionCompiler(UTC).compile({"any": [{"a": 1}, {"b": 2}]})
    facts = Facts("deal", "created", {"a": 0}, None, NOW, UTC)
    assert anyof.explain(facts).reason() == "any: none held (a eq 1: was 0; b eq 2: was null)"


def test_every_registered_operator_is_covered_here() -> None:
    vocabulary()
    covered = {c[0] for c in CASES} | {c[0] for c in CHANGE_CASES}
    assert covered == set(OPERATORS.names())
