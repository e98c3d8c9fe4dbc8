"""Instants, dates and clocks: parsing the ISO forms CRMs write, formatting plan times."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Date-only: 2026-11-22. Date-times: with "T" or a space (SQLite's CURRENT_TIMESTAMP),
# optional fraction, optional "Z" or +hh:mm offset; no offset means UTC.
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
# The forms CRMs mostly write, in the grammar above, for which datetime.fromisoformat (in
# C) gives what the general parse gives: ASCII digits, a "." fraction of up to 6 digits,
# "Z" or an offset of a real hour and minute. Anything else takes the general parse.
_COMMON_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
)

Clock = Callable[[], datetime]


class DateOutOfRange(OverflowError, ValueError):
    """A date or time moved past what datetime holds (before year 1 or after 9999).

    An OverflowError as datetime raises it; a ValueError too, for callers that already
    treat bad values as ValueError.
    """


class NeedsCalendar(DateOutOfRange):
    """Business days or hours where no working calendar is configured: like a date off
    the calendar, a due time that cannot be worked out, and handled where those are (the
    action fails with the reason). Lint says so first (CF225)."""


def system_clock() -> datetime:
    """The real time, aware, in UTC."""
    return datetime.fromtimestamp(time.time(), UTC)


def frozen_clock(at: datetime) -> Clock:
    """A clock that always answers `at` (tests, --now)."""
    return lambda: at


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The time zone called `name`; ValueError when there is none."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_date(text: str) -> date | None:
    """A date-only ISO string as a date, else None."""
    if len(text) == 10 and _DATE_RE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    return None


def parse_datetime(text: str) -> datetime | None:
    """An ISO date-time string as an aware datetime (no offset means UTC), else None."""
    if _COMMON_RE.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass  # a day or an hour that does not exist: the general parse says None
        else:
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    m = _DATETIME_RE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, off = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz: tzinfo = UTC
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            return None  # +99:00 is no UTC offset (and timezone() refuses a day or more)
        tz = _offset_zone(sign * (hours * 60 + minutes))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
        )
    except ValueError:
        return None


@lru_cache(maxsize=128)
def _offset_zone(minutes: int) -> tzinfo:
    from datetime import timezone

    return timezone(timedelta(minutes=minutes))


def parse_temporal(value: object) -> date | datetime | None:
    """A date or an aware datetime from an ISO string (or a date/datetime), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return parse_date(value) or parse_datetime(value)
    return None


def to_instant(value: date | datetime, tz: tzinfo, at: tuple[int, int] = (0, 0)) -> datetime:
    """An aware datetime: a date counts from `at` (hour, minute) local time in `tz`."""
    if isinstance(value, datetime):
        return value
    return localize(datetime(value.year, value.month, value.day, at[0], at[1]), tz)


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """Attach `tz` to a wall-clock time, normalised through UTC.

    A wall time skipped by a spring-forward change comes out shifted by the gap
    (02:30 becomes 03:30); one that occurs twice in autumn takes its first occurrence.
    """
    try:
        return naive.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)
    except OverflowError:
        raise DateOutOfRange(
            f"{naive.isoformat()} in {tz} is out of range (years 1 to 9999)"
        ) from None


def parse_instant(text: str) -> datetime:
    """An aware datetime from an ISO date or date-time; ValueError otherwise."""
    value = parse_temporal(text)
    if value is None:
        raise ValueError(f"not an ISO date or date-time: {text!r}")
    return to_instant(value, UTC)


def format_utc(moment: datetime) -> str:
    """UTC as YYYY-MM-DDTHH:MM:SSZ, with a fraction only when it is not zero."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_fixed(moment: datetime) -> str:
    """UTC as YYYY-MM-DDTHH:MM:SS.mmmZ, always this wide: for columns people read."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def clock_from_env() -> Clock:
    """The system clock, or (for tests and drills) the instant in $CRMFLOW_CLOCK_FILE."""
    path = os.environ.get("CRMFLOW_CLOCK_FILE")
    if not path:
        return system_clock

    def read() -> datetime:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return system_clock()
        return parse_instant(text) if text else system_clock()

    return read
