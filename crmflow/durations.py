"""Durations and signed offsets: `250ms`, `30s`, `15m`, `2h`, `14d`, `2w`, `1y`, ISO 8601 `P14D`,
and working time: `3bd` business days, `4bh` business hours (crmflow.workdays).

Days, weeks, months and years are calendar units applied to the wall clock of a time
zone (a day across a DST change is 23 or 25 hours); hours, minutes and seconds are
exact elapsed time; business units follow the working calendar the zone carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from crmflow.timeutil import DateOutOfRange, NeedsCalendar, localize

_SHORT_RE = re.compile(r"(\d+)\s*(ms|bd|bh|s|m|h|d|w|y)")
_SHORT_FULL_RE = re.compile(r"(?:\d+\s*(?:ms|bd|bh|s|m|h|d|w|y)\s*)+")
_ISO_RE = re.compile(
    r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)

# The pattern the JSON Schema uses; parse() is the authority, this only guides editors.
DURATION_PATTERN = (
    r"^\s*(?:(?:\d+\s*(?:ms|bd|bh|[smhdwy])\s*)+"
    r"|P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?)\s*$"
)
OFFSET_PATTERN = DURATION_PATTERN.replace(r"^\s*(?:", r"^\s*[+-]?\s*(?:", 1)


@dataclass(frozen=True, slots=True)
class Duration:
    """A signed span: calendar months and days plus exact seconds."""

    months: int = 0
    days: int = 0
    seconds: float = 0.0
    text: str = ""
    business_days: int = 0
    business_seconds: float = 0.0

    @property
    def is_zero(self) -> bool:
        return not (
            self.months or self.days or self.seconds or self.business_days or self.business_seconds
        )

    @property
    def negative(self) -> bool:
        return self.months < 0 or self.days < 0 or self.seconds < 0 or self.business_days < 0

    @property
    def working_time(self) -> bool:
        """Whether it counts business days or hours (it needs a `calendar:`)."""
        return bool(self.business_days or self.business_seconds)

    def approx_seconds(self) -> float:
        """Length in seconds with 30-day months, for comparisons that need no calendar
        (a business day is 7/5 of a day, a business hour 168/40 of an hour: a week)."""
        return (
            self.months * 30 * 86400
            + self.days * 86400
            + self.seconds
            + self.business_days * 86400 * 7 / 5
            + self.business_seconds * 168 / 40
        )

    def add_to(self, moment: datetime, tz: tzinfo) -> datetime:
        """`moment` moved by this duration; calendar parts on the wall clock of `tz`.

        DateOutOfRange when the result falls outside the years 1 to 9999.
        """
        try:
            return self._add_to(moment, tz)
        except NeedsCalendar:
            raise
        except (OverflowError, ValueError):
            raise DateOutOfRange(
                f"{self} from {moment.isoformat()} is out of range (years 1 to 9999)"
            ) from None

    def _add_to(self, moment: datetime, tz: tzinfo) -> datetime:
        result = moment
        if self.working_time:
            result = self._add_working_time(moment, tz)
        if self.months or self.days:
            local = moment.astimezone(tz).replace(tzinfo=None)
            if self.months:
                local = _add_months(local, self.months)
            if self.days:
                local += timedelta(days=self.days)
            result = localize(local, tz)
        if self.seconds:
            result = (result.astimezone(UTC) + timedelta(seconds=self.seconds)).astimezone(
                moment.tzinfo
            )
        return result

    def _add_working_time(self, moment: datetime, tz: tzinfo) -> datetime:
        from crmflow.workdays import calendar_of

        calendar = calendar_of(tz)
        if calendar is None:
            raise NeedsCalendar(
                f"{self}: business days and hours need a calendar: in the configuration"
            )
        local = moment.astimezone(tz).replace(tzinfo=None)
        if self.business_days:
            local = calendar.add_days(local, self.business_days)
        if self.business_seconds:
            local = calendar.add_hours(local, self.business_seconds)
        return localize(local, tz).astimezone(moment.tzinfo)

    def __str__(self) -> str:
        return self.text or f"P{self.months}M{self.days}DT{self.seconds}S"


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(moment.day, _days_in_month(year, month))
    return moment.replace(year=year, month=month, day=day)


def parse(text: str, *, signed: bool = False) -> Duration:
    """Parse a duration (or, with `signed`, an offset with an optional sign).

    Raises ValueError with a message that shows the accepted forms.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string such as 14d, not {text!r}")
    raw = text.strip()
    sign = 1
    if raw[:1] in "+-" and raw:
        if not signed:
            raise ValueError(f"{text!r}: a duration takes no sign here")
        sign = -1 if raw[0] == "-" else 1
        raw = raw[1:].strip()
    months = days = business_days = 0
    seconds = business_seconds = 0.0
    if _SHORT_FULL_RE.fullmatch(raw):
        for amount, unit in _SHORT_RE.findall(raw):
            n = int(amount)
            if unit == "bd":
                business_days += n
            elif unit == "bh":
                business_seconds += 3600 * n
            elif unit == "ms":
                seconds += n / 1000
            elif unit == "s":
                seconds += n
            elif unit == "m":
                seconds += 60 * n
            elif unit == "h":
                seconds += 3600 * n
            elif unit == "d":
                days += n
            elif unit == "w":
                days += 7 * n
            else:
                months += 12 * n
    elif (m := _ISO_RE.fullmatch(raw)) is not None:
        y, mo, w, d, h, mi, s = m.groups()
        months = int(y or 0) * 12 + int(mo or 0)
        days = int(w or 0) * 7 + int(d or 0)
        seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    else:
        raise ValueError(
            f"{text!r} is not a duration (write 30s, 15m, 2h, 14d, 2w, 1y, 3bd, 4bh or ISO "
            "8601 like P14D)"
        )
    if sign < 0 and business_seconds:
        raise ValueError(f"{text!r}: business hours cannot count backwards; use bd or h")
    return Duration(
        sign * months,
        sign * days,
        sign * seconds,
        text.strip(),
        sign * business_days,
        business_seconds,
    )


class FromNow:
    """The instant an offset such as -14d points to from `now`, worked out once per now.

    Events judged at the same moment (a stream with one `now`, a daemon tick) share
    it. `last` is a (now, instant) pair replaced whole, so threads sharing a compiled
    workflow never read one's instant with the other's moment.
    """

    __slots__ = ("last", "offset", "tz")

    def __init__(self, offset: Duration, tz: tzinfo) -> None:
        self.offset = offset
        self.tz = tz
        self.last: tuple[datetime | None, datetime | None] = (None, None)

    def at(self, now: datetime) -> datetime:
        last = self.last
        if last[0] is not now:
            last = self.last = (now, self.offset.add_to(now, self.tz))
        return last[1]  # type: ignore[return-value]
