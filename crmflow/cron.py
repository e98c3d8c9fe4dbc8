"""Cron expressions with standard crontab meaning, evaluated on a time zone's wall clock.

Five fields (minute hour day-of-month month day-of-week), `*`, ranges, steps, lists,
month and weekday names, day of week 0 and 7 both Sunday, and the usual rule that when
both day fields are restricted a day matching either one runs. Macros: @yearly,
@annually, @monthly, @weekly, @daily, @midnight, @hourly.

DST: a wall time that a spring-forward change skips runs shifted by the gap (02:30
becomes 03:30); a wall time that occurs twice in autumn runs once, at its first
occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from crmflow.timeutil import localize

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# How far ahead to look for the next run before declaring an expression impossible
# (e.g. 30 February): eight years covers every leap-year and weekday combination.
_HORIZON_DAYS = 366 * 8


class CronError(ValueError):
    """A cron expression that does not parse."""


@dataclass(frozen=True, slots=True)
class Cron:
    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def occurrences(self, after: datetime, tz: tzinfo) -> Iterator[datetime]:
        """Run times strictly after `after`, ascending, as aware UTC datetimes."""
        local_start = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        day = local_start.replace(hour=0, minute=0)
        last: datetime | None = None
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = day.replace(hour=hour, minute=minute)
                        if wall < local_start:
                            continue
                        moment = localize(wall, tz).astimezone(UTC)
                        if moment <= after or (last is not None and moment <= last):
                            continue
                        last = moment
                        yield moment
            day += timedelta(days=1)

    def next_after(self, after: datetime, tz: tzinfo) -> datetime | None:
        return next(self.occurrences(after, tz), None)


def parse_cron(text: str) -> Cron:
    """Parse a five-field cron expression or macro; CronError names the bad field."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("empty cron expression")
    expanded = _MACROS.get(text.strip().lower(), text)
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(
            f"cron expression {text!r} has {len(parts)} fields; "
            "expected 5: minute hour day-of-month month day-of-week"
        )
    values = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    cron = Cron(
        text=text,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )
    if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC), UTC) is None:
        raise CronError(f"cron expression {text!r} never runs")
    return cron


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"empty list item in {name} field {text!r}")
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step {step_text!r} in {name} field {text!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
            if name == "day of week":
                end = 6
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if start > end:
                raise CronError(f"range {body!r} runs backwards in {name} field")
        else:
            start = _value(body, name, low, high, names)
            end = high if step_text else start
        result.update(range(start, end + 1, step))
    return result


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{text!r} is not a valid {name}")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name} {number} is out of range {low}-{high}")
    return number
