"""Comparing CRM values without coercion: the null and type rules of conditions."""

from __future__ import annotations

import json
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any

from crmflow.timeutil import parse_temporal, to_instant

_NUMBER = (int, float)


def same(a: Any, b: Any) -> bool:
    """Equality without coercion: null equals only null, True is not 1, "1" is not 1."""
    if a is None or b is None:
        return a is b
    ta, tb = type(a), type(b)
    if ta is tb:
        return bool(a == b)
    if ta is bool or tb is bool:
        return False
    if isinstance(a, _NUMBER) and isinstance(b, _NUMBER):
        return bool(a == b)
    return False


def is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and type(value) is not bool


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@lru_cache(maxsize=8192)
def temporal(text: str) -> date | datetime | None:
    """An ISO date or date-time string parsed (cached: CRM data repeats its dates)."""
    return parse_temporal(text)


def as_temporal(value: Any) -> date | datetime | None:
    if isinstance(value, str):
        return temporal(value)
    if isinstance(value, date):
        return parse_temporal(value)
    return None


def compare_temporal(a: date | datetime, b: date | datetime, tz: tzinfo) -> int:
    """-1, 0 or 1; a date meets a date-time at 00:00 in `tz`."""
    if type(a) is date and type(b) is date:
        return (a > b) - (a < b)
    x, y = to_instant(a, tz), to_instant(b, tz)
    return (x > y) - (x < y)


def display(value: Any) -> str:
    """A value as a reason shows it: strings bare, null as null, the rest as JSON."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int or (kind is float and value - value == 0):
        # What json.dumps writes for an int or a finite float, without its machinery.
        return repr(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


# Control characters (C0, DEL, C1) and bidirectional overrides: CRM data printed to a
# terminal or a log must not move the cursor, recolour it, or reorder what people read.
_UNPRINTABLE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [
        *range(0x20),
        0x7F,
        *range(0x80, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
    if chr(code) not in "\n\t"
}


def printable(text: str) -> str:
    """`text` with every control character shown as its escape (`\\x1b`), lines kept."""
    return text.translate(_UNPRINTABLE)
