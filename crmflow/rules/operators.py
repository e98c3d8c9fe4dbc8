"""Condition operators: one table that feeds evaluation, lint and the JSON Schema.

A value operator tests the field's current value; a change operator compares the value
in `previous` with the one in `record` and is false on created and deleted events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Literal

import re2

from crmflow import durations
from crmflow.rules.registry import OPERATORS, OperatorDef
from crmflow.timeutil import to_instant
from crmflow.values import as_temporal, compare_temporal, is_empty, is_number, same, temporal

if TYPE_CHECKING:
    from crmflow.rules.conditions import Facts

ValueTest = Callable[[Any, "Facts"], bool]
ChangeTest = Callable[[Any, Any], bool]

ANY_VALUE: dict[str, Any] = {}
SCALAR = {"type": ["string", "number", "boolean", "null"]}
TEMPORAL_OPERAND_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


Builder = Callable[[Any, tzinfo], Any]
FIELD_REF = {
    "type": "object",
    "description": "compare with another field of the record",
    "properties": {"field": {"type": "string", "minLength": 1}},
    "required": ["field"],
    "additionalProperties": False,
}


def _register(
    name: str,
    doc: str,
    schema: dict[str, Any],
    kind: Literal["value", "change"] = "value",
    ordering: bool = False,
    pair: Callable[[Any, Any, tzinfo], bool] | None = None,
) -> Callable[[Builder], Builder]:
    if pair is not None:
        schema = {"anyOf": [schema or {"not": FIELD_REF}, FIELD_REF]}

    def decorate(build: Builder) -> Builder:
        OPERATORS.add(name, OperatorDef(name, doc, schema, kind, build, ordering, pair))
        return build

    return decorate


def order(a: Any, b: Any, tz: tzinfo) -> int | None:
    """-1, 0 or 1 for two numbers, two ISO dates or two strings; None when incomparable."""
    if is_number(a) and is_number(b):
        return (a > b) - (a < b)
    if type(a) is str and type(b) is str:
        ta, tb = temporal(a), temporal(b)
        if ta is not None and tb is not None:
            return compare_temporal(ta, tb, tz)
        if (ta is None) != (tb is None):
            return None
        return (a > b) - (a < b)
    return None


def _pair_order(accept: Callable[[int], bool]) -> Callable[[Any, Any, tzinfo], bool]:
    def test(a: Any, b: Any, tz: tzinfo) -> bool:
        c = order(a, b, tz)
        return c is not None and accept(c)

    return test


@_register(
    "eq",
    "equal to (null equals null; no type coercion)",
    ANY_VALUE,
    pair=lambda a, b, tz: same(a, b),
)
def _eq(operand: Any, tz: tzinfo) -> ValueTest:
    return lambda value, facts: same(value, operand)


@_register("ne", "not equal to (exactly `not eq`)", ANY_VALUE, pair=lambda a, b, tz: not same(a, b))
def _ne(operand: Any, tz: tzinfo) -> ValueTest:
    return lambda value, facts: not same(value, operand)


def _ordering(accept: Callable[[int], bool]) -> Callable[[Any, tzinfo], ValueTest]:
    def build(operand: Any, tz: tzinfo) -> ValueTest:
        if is_number(operand):

            def test_number(value: Any, facts: Facts) -> bool:
                if not is_number(value):
                    return False
                return accept((value > operand) - (value < operand))

            return test_number
        operand_time = temporal(operand) if isinstance(operand, str) else None
        if operand_time is not None:

            def test_time(value: Any, facts: Facts) -> bool:
                value_time = as_temporal(value)
                if value_time is None:
                    return False
                return accept(compare_temporal(value_time, operand_time, tz))

            return test_time

        def test_string(value: Any, facts: Facts) -> bool:
            if type(value) is not str:
                return False
            return accept((value > operand) - (value < operand))

        return test_string

    return build


_ORDER_SCHEMA = {"type": ["number", "string"]}
for _name, _doc, _accept in (
    ("gt", "greater than (numbers, strings, ISO dates)", lambda c: c > 0),
    ("gte", "greater than or equal to", lambda c: c >= 0),
    ("lt", "less than", lambda c: c < 0),
    ("lte", "less than or equal to", lambda c: c <= 0),
):
    _register(_name, _doc, _ORDER_SCHEMA, ordering=True, pair=_pair_order(_accept))(
        _ordering(_accept)
    )


def _member_test(operand: list[Any]) -> Callable[[Any], bool]:
    # Strings and non-bool numbers hash and compare the same way `same` does, so they
    # can take a set; anything else (null, booleans, lists) falls back to `same`.
    simple = {x for x in operand if type(x) in (str, int, float)}
    others = [x for x in operand if type(x) not in (str, int, float)]

    def member(value: Any) -> bool:
        if type(value) in (str, int, float) and value in simple:
            return True
        return any(same(value, x) for x in others)

    return member


@_register("in", "one of the listed values", {"type": "array"})
def _in(operand: list[Any], tz: tzinfo) -> ValueTest:
    member = _member_test(operand)
    return lambda value, facts: member(value)


@_register("not_in", "none of the listed values", {"type": "array"})
def _not_in(operand: list[Any], tz: tzinfo) -> ValueTest:
    member = _member_test(operand)
    return lambda value, facts: not member(value)


@_register("contains", "substring of a string, or element of a list", ANY_VALUE, ordering=True)
def _contains(operand: Any, tz: tzinfo) -> ValueTest:
    def test(value: Any, facts: Facts) -> bool:
        if type(value) is str:
            return type(operand) is str and operand in value
        if type(value) is list:
            return any(same(item, operand) for item in value)
        return False

    return test


# `matches` runs on RE2, which matches in time linear in the text: Python's `re` backtracks,
# so `(a+)+$` against 40 a's and a "!" never finishes, and nothing can bound it from
# outside (a thread running a regex cannot be stopped). RE2 refuses what it cannot run in
# linear time (backreferences, lookaround, possessive quantifiers), and lint reports that.
# max_mem bounds the compiled program: a giant pattern is an error, not a memory hog; a
# search that outgrows its DFA budget falls back to RE2's NFA, still linear.
PATTERN_MAX_MEM = 8 << 20


class PatternError(ValueError):
    """A `matches` pattern RE2 cannot compile; `reason` is RE2's own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pattern_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEM
    options.log_errors = False  # the reason goes into the finding, not to stderr
    # `matches` only answers whether there is a match: without capture groups RE2 needs
    # no submatch pass, which is the slow part on a pattern such as `(.*a){20}`.
    options.never_capture = True
    return options


_PATTERN_OPTIONS = _pattern_options()


def _utf8(text: str) -> bytes:
    # Lone surrogates (CRM data may hold them) pass as bytes RE2 matches as no character.
    return text.encode("utf-8", "surrogatepass")


def compile_pattern(operand: str) -> Any:
    """The RE2 program for a `matches` operand; PatternError when RE2 rejects it."""
    try:
        return re2.compile(_utf8(operand), _PATTERN_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


@_register(
    "matches",
    "regular expression search (RE2 syntax: linear time; no backreferences or lookaround)",
    {"type": "string"},
    ordering=True,
)
def _matches(operand: str, tz: tzinfo) -> ValueTest:
    # Compiled once per workflow; searched as UTF-8 bytes, the same match anywhere as
    # `re.search`, and the bytes path skips the wrapper's character-offset bookkeeping.
    pattern = compile_pattern(operand)
    search = pattern.search
    return lambda value, facts: type(value) is str and search(_utf8(value)) is not None


@_register("empty", 'true: null, missing, "" or []; false: anything else', {"type": "boolean"})
def _empty(operand: bool, tz: tzinfo) -> ValueTest:
    if operand:
        return lambda value, facts: is_empty(value)
    return lambda value, facts: not is_empty(value)


@_register(
    "changed",
    "true: the value differs between previous and record",
    {"type": "boolean"},
    kind="change",
)
def _changed(operand: bool, tz: tzinfo) -> ChangeTest:
    if operand:
        return lambda old, new: not same(old, new)
    return lambda old, new: same(old, new)


@_register("changed_from", "it changed, and the old value equals this", ANY_VALUE, kind="change")
def _changed_from(operand: Any, tz: tzinfo) -> ChangeTest:
    return lambda old, new: not same(old, new) and same(old, operand)


@_register("changed_to", "it changed, and the new value equals this", ANY_VALUE, kind="change")
def _changed_to(operand: Any, tz: tzinfo) -> ChangeTest:
    return lambda old, new: not same(old, new) and same(new, operand)


_WHEN_SCHEMA = {
    "type": "string",
    "anyOf": [{"pattern": TEMPORAL_OPERAND_PATTERN}, {"pattern": durations.OFFSET_PATTERN}],
    "description": "an ISO date/date-time, or a signed offset from now such as -14d or +2h",
}


def _when(accept: Callable[[int], bool]) -> Callable[[Any, tzinfo], ValueTest]:
    def build(operand: str, tz: tzinfo) -> ValueTest:
        fixed = temporal(operand)
        if fixed is not None:

            def test_fixed(value: Any, facts: Facts) -> bool:
                value_time = as_temporal(value)
                return value_time is not None and accept(compare_temporal(value_time, fixed, tz))

            return test_fixed
        # The bound depends only on the event's now: work it out once per now.
        from_now = durations.FromNow(durations.parse(operand, signed=True), tz)

        def test_relative(value: Any, facts: Facts) -> bool:
            value_time = as_temporal(value)
            if value_time is None:
                return False
            bound = from_now.at(facts.now)
            moment = to_instant(value_time, tz)
            return accept((moment > bound) - (moment < bound))

        return test_relative

    return build


_register(
    "before",
    "date/time earlier than an ISO date or a signed offset from now",
    _WHEN_SCHEMA,
    ordering=True,
)(_when(lambda c: c < 0))
_register(
    "after",
    "date/time later than an ISO date or a signed offset from now",
    _WHEN_SCHEMA,
    ordering=True,
)(_when(lambda c: c > 0))

COMBINATORS = ("all", "any", "not")
