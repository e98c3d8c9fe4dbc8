"""`digest:` on a notify or email action, compiled: how often its digest goes out, and
when (crmflow.engine.digests collects and sends)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from crmflow import durations
from crmflow.timeutil import localize

# Days are counted from a Monday: a weekly digest (`every: 1w`) goes out on Mondays.
EPOCH_MONDAY = date(2001, 1, 1)
DEFAULT_AT = "08:00"
_AT = re.compile(r"(\d\d):([0-5]\d)")
# The longest cadence: a year of days.
MAX_DAYS = 366
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
        at = spec.get("at", DEFAULT_AT)
        match = _AT.fullmatch(at) if isinstance(at, str) else None
        if match is None or int(match[1]) > 23:
            raise ValueError(f"at: {at!r} is no time of day (HH:MM, 00:00 to 23:59)")
        subject = spec.get("subject")
        if isinstance(subject, str) and ("{{" in subject or "{%" in subject):
            raise ValueError(
                "subject: a digest's subject is plain text (its items come from many "
                "records); templates belong in the action's own subject"
            )
        return cls(every, time(int(match[1]), int(match[2])), subject)

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
    """Why `every` cannot be a digest's cadence, or None: whole days or weeks up to a
    year, or a span of 1 minute to under a day."""
    if every.working_time or every.months:
        return f"every: {every} counts months or working time; use days, weeks, hours or minutes"
    if every.days and every.seconds:
        return f"every: {every} mixes days and hours; use one of them"
    if every.days > MAX_DAYS:
        return f"every: {every} is over a year; a digest goes out at least once every 366 days"
    if not every.days and every.seconds >= 86400:
        return f"every: {every} is a day or more; say it in days (1d) or weeks (1w)"
    if not every.days and every.seconds < 60:
        return f"every: {every} is under a minute; a digest goes out at most once a minute"
    return None
