"""Durations, calendar arithmetic across DST, cron expressions, and ISO parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from crmflow.cron import CronError, parse_cron
from crmflow.durations import parse
from crmflow.timeutil import format_utc, parse_datetime, parse_temporal

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "months", "days", "seconds"),
    [
        ("30s", 0, 0, 30),
        ("15m", 0, 0, 900),
        ("2h", 0, 0, 7200),
        ("14d", 0, 14, 0),
        ("2w", 0, 14, 0),
        ("1y", 12, 0, 0),
        ("P14D", 0, 14, 0),
        ("PT2H", 0, 0, 7200),
        ("P1Y", 12, 0, 0),
        ("P1M", 1, 0, 0),
        ("P1DT12H", 0, 1, 43200),
        ("1d12h", 0, 1, 43200),
        ("PT0.5S", 0, 0, 0.5),
    ],
)
def test_duration_forms(text: str, months: int, days: int, seconds: float) -> None:
    d = parse(text)
    assert (d.months, d.days, d.seconds) == (months, days, seconds)


@pytest.mark.parametrize("text", ["14", "14 days", "d", "P", "PT", "-7d", "1.5h", "", "P1H"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_signed_offsets() -> None:
    assert parse("-7d", signed=True).days == -7
    assert parse("+2h", signed=True).seconds == 7200
    assert parse("-P1Y", signed=True).months == -12


def test_a_day_across_spring_forward_is_23_hours() -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # 13:00 CET
    later = parse("1d").add_to(start, BERLIN)
    assert later.astimezone(BERLIN).hour == 13
    assert (later - start).total_seconds() == 23 * 3600
    assert (parse("24h").add_to(start, BERLIN) - start).total_seconds() == 24 * 3600


def test_a_day_across_fall_back_is_25_hours() -> None:
    start = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    assert (parse("1d").add_to(start, BERLIN) - start).total_seconds() == 25 * 3600


def test_years_and_months_clamp_to_the_end_of_month() -> None:
    assert parse("1y").add_to(datetime(2024, 2, 29, 12, tzinfo=UTC), UTC).date() == date(
        2025, 2, 28
    )
    assert parse("P1M").add_to(datetime(2026, 1, 31, tzinfo=UTC), UTC).date() == date(2026, 2, 28)
    assert parse("-1y", signed=True).add_to(datetime(2026, 5, 1, tzinfo=UTC), UTC).year == 2025


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22 10:00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T11:00:00+01:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00.250Z", datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-22T10:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00+0100", datetime(2026, 11, 22, 9, tzinfo=UTC)),
    ],
)
def test_iso_forms_crms_write(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


def test_dates_stay_dates_and_garbage_is_none() -> None:
    assert parse_temporal("2026-11-22") == date(2026, 11, 22)
    assert parse_temporal("2026-13-45") is None
    assert parse_temporal("tomorrow") is None
    assert parse_temporal(20261122) is None


def test_format_utc_shows_fractions_only_when_present() -> None:
    assert format_utc(datetime(2026, 11, 22, 11, tzinfo=BERLIN)) == "2026-11-22T10:00:00Z"
    assert (
        format_utc(datetime(2026, 11, 22, 10, 0, 0, 500000, tzinfo=UTC)) == "2026-11-22T10:00:00.5Z"
    )


def _next(expr: str, after: datetime, tz: object = UTC, n: int = 3) -> list[str]:
    it = parse_cron(expr).occurrences(after, tz)  # type: ignore[arg-type]
    return [format_utc(next(it)) for _ in range(n)]


def test_cron_weekdays_in_a_time_zone() -> None:
    # Friday 2026-11-20 11:00 Berlin -> next weekday 08:00 Berlin runs are Mon..Wed.
    assert _next("0 8 * * 1-5", datetime(2026, 11, 20, 10, tzinfo=UTC), BERLIN) == [
        "2026-11-23T07:00:00Z",
        "2026-11-24T07:00:00Z",
        "2026-11-25T07:00:00Z",
    ]


def test_cron_day_of_week_0_and_7_are_sunday() -> None:
    after = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    assert (
        _next("0 0 * * 0", after, n=1) == _next("0 0 * * 7", after, n=1) == ["2026-11-29T00:00:00Z"]
    )
    assert _next("0 0 * * sun", after, n=1) == ["2026-11-29T00:00:00Z"]


def test_cron_day_fields_or_when_both_restricted() -> None:
    # The 1st of the month OR any Monday.
    got = _next("0 0 1 * 1", datetime(2026, 11, 24, tzinfo=UTC), n=3)
    assert got == ["2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-07T00:00:00Z"]


def test_cron_steps_ranges_lists_and_macros() -> None:
    assert _next("*/20 9-10 * * *", datetime(2026, 11, 22, 9, 30, tzinfo=UTC), n=3) == [
        "2026-11-22T09:40:00Z",
        "2026-11-22T10:00:00Z",
        "2026-11-22T10:20:00Z",
    ]
    assert _next("@daily", datetime(2026, 11, 22, 9, tzinfo=UTC), n=1) == ["2026-11-23T00:00:00Z"]
    assert _next("0 12 29 feb *", datetime(2026, 3, 1, tzinfo=UTC), n=1) == ["2028-02-29T12:00:00Z"]


def test_cron_dst_gap_runs_shifted_and_overlap_runs_once() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin: it runs at 03:30 CEST (01:30Z).
    assert _next("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=UTC), BERLIN, 2) == [
        "2026-03-29T01:30:00Z",
        "2026-03-30T00:30:00Z",
    ]
    # 02:30 happens twice on 2026-10-25: it runs once, at the first (00:30Z).
    assert _next("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=UTC), BERLIN, 2) == [
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 8 * *", "has 4 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "never runs"),
        ("x * * * *", "not a valid minute"),
        ("0 0 * * 8", "out of range"),
        ("5-1 * * * *", "backwards"),
        ("*/0 * * * *", "bad step"),
        ("", "empty"),
    ],
)
def test_bad_cron_expressions(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expr)
