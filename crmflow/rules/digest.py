"""`digest:` on a notify or email action, compiled: how often its digest goes out, and
when (crmflow.engine.digests collects and sends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from crmflow import durations
from crmflow.timeutil import localize

# Days are counted from a Monday: a weekly digest (`every: 1w`) goes out on Mondays.
EPOCH_MONDAY = date(2001, 1, 1)
DEFAULT_AT = "08:00"
# The actions whose messages a digest can collect.
DIGESTIBLE = ("notify", "email")


@dataclass(frozen=True, slots=True)
class DigestSpec:
    """A compiled `digest:`: how often, at what local time, and an optional subject."""

    every: durations.Duration
    at: time
    subject: str | None = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> DigestSpec:
        """From a schema-valid mapping; ValueError says what is wrong with `every`/`at`."""
        every = durations.parse(spec["every"])
        problem = cadence_problem(every)
        if problem is not None:
            raise ValueError(problem)
        hours, minutes = (int(part) for part in str(spec.get("at", DEFAULT_AT)).split(":"))
        if hours > 23 or minutes > 59:
            raise ValueError(f"at: {spec['at']!r} is no time of day (00:00 to 23:59)")
        return cls(every, time(hours, minutes), spec.get("subject"))

    def next_sending(self, now: datetime, tz: tzinfo) -> datetime:
        """The first sending after `now`: on the local wall clock of `tz`."""
        today = now.astimezone(tz).date()
        if self.every.days:
            for offset in range(self.every.days + 1):
                day = today + timedelta(days=offset)
                if (day - EPOCH_MONDAY).days % self.every.days:
                    continue
                moment = localize(datetime.combine(day, self.at), tz)
                if moment > now:
                    return moment
            raise AssertionError("a sending falls within every + 1 days")
        # Within a day: from `at` on, every `every`, until the next day's `at`.
        step = timedelta(seconds=self.every.seconds)
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            start = localize(datetime.combine(day, self.at), tz)
            end = localize(datetime.combine(day + timedelta(days=1), self.at), tz)
            moment = start
            while moment < end:
                if moment > now:
                    return moment
                moment += step
        raise AssertionError("a sending falls within two days")


def cadence_problem(every: durations.Duration) -> str | None:
    """Why `every` cannot be a digest's cadence, or None: whole days or weeks, or a
    span of 1 minute to under a day."""
    if every.working_time or every.months:
        return f"every: {every} counts months or working time; use days, weeks, hours or minutes"
    if every.days and every.seconds:
        return f"every: {every} mixes days and hours; use one of them"
    if not every.days and not 60 <= every.seconds < 86400:
        return f"every: {every} is under a minute; a digest goes out at most once a minute"
    return None
