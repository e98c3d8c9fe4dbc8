"""Working time: which days are working days, which hours working hours (`calendar:`).

Public holidays come from the `holidays` package (country and subdivision, kept up to
date by its maintainers). Business days (`3bd`) step over weekends and holidays and keep
the time of day; business hours (`4bh`) count only working hours; `within:
business_hours` moves a due time to the next working moment.

The calendar travels with the configured time zone (`CalendarZone`): every place that
works out a due time already receives the zone, so durations with business units reach
the calendar there without another parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WorkCalendar:
    country: str | None = None
    subdivision: str | None = None
    start: time = time(9, 0)
    end: time = time(17, 0)
    weekdays: frozenset[int] = frozenset(range(5))  # Monday is 0, as date.weekday()
    _holidays: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> WorkCalendar:
        """From crmflow.yaml's `calendar:`; ValueError names what is wrong."""
        hours = spec.get("hours", "09:00-17:00")
        try:
            first, last = (time.fromisoformat(part.strip()) for part in hours.split("-"))
        except ValueError:
            raise ValueError(f"hours: {hours!r} is not a span such as 09:00-17:00") from None
        if first >= last:
            raise ValueError(
                f"hours: {hours!r} does not end after it starts (working hours within one "
                "day; overnight spans are not supported)"
            )
        days = spec.get("weekdays", list(WEEKDAYS[:5]))
        country = spec.get("country")
        holidays = None
        if country:
            import holidays as holiday_data

            subdivision = spec.get("subdivision")
            known = holiday_data.list_supported_countries()
            if country not in known:
                raise ValueError(f"country: no public holidays are known for {country!r}")
            if subdivision is not None and subdivision not in known[country]:
                raise ValueError(
                    f"subdivision: {country} has no subdivision {subdivision!r} "
                    f"(known: {', '.join(known[country][:12])}"
                    f"{', ...' if len(known[country]) > 12 else ''})"
                )
            holidays = holiday_data.country_holidays(country, subdiv=subdivision)
        return cls(
            country,
            spec.get("subdivision"),
            first,
            last,
            frozenset(WEEKDAYS.index(d) for d in days),
            holidays,
        )

    def is_workday(self, day: date) -> bool:
        return day.weekday() in self.weekdays and not self.is_holiday(day)

    def is_holiday(self, day: date) -> bool:
        return self._holidays is not None and day in self._holidays

    def add_days(self, local: datetime, count: int) -> datetime:
        """`count` working days later (earlier when negative), at the same time of day."""
        step = 1 if count >= 0 else -1
        left = abs(count)
        if not self.weekdays:
            raise ValueError("calendar: no weekday is a working day")
        while left:
            local += timedelta(days=step)
            if self.is_workday(local.date()):
                left -= 1
        return local

    def add_hours(self, local: datetime, seconds: float) -> datetime:
        """`seconds` of working time later, counted only within working hours."""
        if seconds < 0:
            raise ValueError("business hours cannot go backwards")
        local = self.next_working_moment(local)
        left = timedelta(seconds=seconds)
        while True:
            closing = datetime.combine(local.date(), self.end)
            if local + left <= closing:
                return local + left
            left -= closing - local
            local = self.next_working_moment(closing)

    def next_working_moment(self, local: datetime) -> datetime:
        """`local` itself when it is working time, else when work next starts."""
        day = local.date()
        if self.is_workday(day):
            opening = datetime.combine(day, self.start)
            if local < opening:
                return opening
            if local < datetime.combine(day, self.end):
                return local
        for _ in range(366 * 2):
            day += timedelta(days=1)
            if self.is_workday(day):
                return datetime.combine(day, self.start)
        raise ValueError("calendar: no working day within two years")


class CalendarZone(tzinfo):
    """A time zone that carries the working calendar; times behave as in `zone`."""

    def __init__(self, zone: tzinfo, calendar: WorkCalendar) -> None:
        self.zone = zone
        self.calendar = calendar

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self.zone.utcoffset(dt)

    def fromutc(self, dt: datetime) -> datetime:
        # tzinfo's own fromutc guesses wrong in the hour a clock changes; the zone's is
        # exact (and sets fold), so `astimezone` lands where ZoneInfo would.
        local = self.zone.fromutc(dt.replace(tzinfo=self.zone))
        return local.replace(tzinfo=self)

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self.zone.dst(dt)

    def tzname(self, dt: datetime | None) -> str | None:
        return self.zone.tzname(dt)

    def __str__(self) -> str:
        return str(self.zone)

    def __repr__(self) -> str:
        return f"CalendarZone({self.zone!r}, {self.calendar!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CalendarZone)
            and other.zone == self.zone
            and other.calendar == self.calendar
        )

    def __hash__(self) -> int:
        return hash((self.zone, self.calendar))


def next_working_moment(moment: datetime, tz: tzinfo) -> datetime:
    """`moment` when it is working time in the zone's calendar, else when work next starts;
    NeedsCalendar without a calendar."""
    from crmflow.timeutil import NeedsCalendar, localize

    calendar = calendar_of(tz)
    if calendar is None:
        raise NeedsCalendar("within: business_hours needs a calendar: in the configuration")
    local = moment.astimezone(tz).replace(tzinfo=None)
    return localize(calendar.next_working_moment(local), tz).astimezone(moment.tzinfo)


def calendar_of(tz: tzinfo) -> WorkCalendar | None:
    return tz.calendar if isinstance(tz, CalendarZone) else None


def with_calendar(tz: tzinfo, calendar: WorkCalendar | None) -> tzinfo:
    """`tz` carrying `calendar` (another zone with the same calendar, for a test case)."""
    base = tz.zone if isinstance(tz, CalendarZone) else tz
    return CalendarZone(base, calendar) if calendar is not None else base


@lru_cache(maxsize=64)
def _cached(spec: tuple[tuple[str, Any], ...]) -> WorkCalendar:
    return WorkCalendar.from_config(dict(spec))


def calendar_from(spec: dict[str, Any]) -> WorkCalendar:
    """One calendar per distinct `calendar:` (holiday tables are built once)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))
    return _cached(frozen)
