"""Working time: business days and hours over weekends and public holidays (the
`holidays` package), `within: business_hours`, lint without a calendar, and a real daemon
planning a delayed action by business days."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crmflow import durations
from crmflow.workdays import CalendarZone, calendar_from
from tests.conftest import Result
from tests.daemonkit import make_rig

BERLIN = ZoneInfo("Europe/Berlin")
Cli = Callable[..., Result]


def moved(start: str, span: str, spec: dict[str, object]) -> str:
    tz = CalendarZone(BERLIN, calendar_from(spec))
    moment = datetime.fromisoformat(start).replace(tzinfo=BERLIN)
    result = durations.parse(span, signed=True).add_to(moment, tz)
    return result.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("start", "span", "spec", "expected"),
    [
        # Christmas in Germany: the 25th and 26th are holidays, then a weekend.
        ("2026-12-24T10:00", "2bd", {"country": "DE"}, "Tue 2026-12-29 10:00"),
        ("2026-12-24T10:00", "1bd", {"country": "DE"}, "Mon 2026-12-28 10:00"),
        # Bavaria has Epiphany (6 January); Berlin does not.
        ("2027-01-05T10:00", "1bd", {"country": "DE", "subdivision": "BY"}, "Thu 2027-01-07 10:00"),
        ("2027-01-05T10:00", "1bd", {"country": "DE", "subdivision": "BE"}, "Wed 2027-01-06 10:00"),
        # Backwards, for offsets before a date.
        ("2026-12-28T10:00", "-1bd", {"country": "DE"}, "Thu 2026-12-24 10:00"),
        # Business hours count only working time: 1 h on Thursday, then Monday.
        ("2026-12-24T16:00", "4bh", {"country": "DE"}, "Mon 2026-12-28 12:00"),
        ("2026-12-05T11:00", "1bh", {"hours": "08:00-12:00"}, "Mon 2026-12-07 09:00"),
        # Other working weeks.
        ("2026-12-04T10:00", "1bd", {"weekdays": ["sun", "mon"]}, "Sun 2026-12-06 10:00"),
        # Plain units are untouched by the calendar.
        ("2026-12-24T10:00", "2d", {"country": "DE"}, "Sat 2026-12-26 10:00"),
    ],
)
def test_business_units(start: str, span: str, spec: dict[str, object], expected: str) -> None:
    assert moved(start, span, spec) == expected


def test_without_a_calendar_business_units_fail_with_the_reason() -> None:
    with pytest.raises(durations.NeedsCalendar, match="need a calendar: in the configuration"):
        durations.parse("2bd").add_to(datetime(2026, 12, 24, tzinfo=UTC), BERLIN)


def test_lint_needs_a_calendar_when_a_configuration_has_none(
    cli: Cli, rules_dir: Callable[..., Path], tmp_path: Path
) -> None:
    rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\n"
            "actions:\n  - warn: x\n    delay: 3bd\n    within: business_hours\n"
        }
    )
    (tmp_path / "crmflow.yaml").write_text("timezone: Europe/Berlin\n")
    result = cli("lint", "rules")
    assert result.code == 1
    assert result.out.splitlines()[:2] == [
        "rules/w.yaml:6:12: CF225 w: 3bd counts working time, which needs a calendar: in "
        "crmflow.yaml",
        "rules/w.yaml:7:13: CF225 w: within: business_hours needs a calendar: in crmflow.yaml",
    ]
    (tmp_path / "crmflow.yaml").write_text("timezone: Europe/Berlin\ncalendar: {country: DE}\n")
    assert cli("lint", "rules").code == 0


def test_eval_without_a_calendar_fails_the_action_not_the_stream(
    cli: Cli, rules_dir: Callable[..., Path]
) -> None:
    rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - warn: x\n    delay: 3bd\n"
        }
    )
    event = {"entity": "deal", "event": "created", "record": {"id": 1}, "at": "2026-12-24T09:00Z"}
    result = cli("eval", "--dry-run", "--format", "json", stdin=json.dumps(event))
    assert result.code == 0, result.err
    action = json.loads(result.out)["rules"][0]["actions"][0]
    assert "need a calendar" in action["error"]


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        (
            "{hours: '17:00-09:00'}",
            "crmflow.yaml:1:11: CF104 calendar: hours: '17:00-09:00' does not end after it starts",
        ),
        ("{country: XX}", "crmflow.yaml:1:11: CF104 calendar: country: no public holidays"),
        (
            "{country: DE, subdivision: ZZ}",
            "crmflow.yaml:1:11: CF104 calendar: subdivision: DE has no subdivision 'ZZ' (known: BB",
        ),
        (
            "{country: de}",
            "crmflow.yaml:1:21: CF104 calendar.country: 'de' is not valid: expected a ",
        ),
        ("{weekdays: [monday]}", "crmflow.yaml:1:23: CF104 calendar.weekdays[0]:"),
    ],
)
def test_a_calendar_mistake_is_one_line(
    cli: Cli, rules_dir: Callable[..., Path], tmp_path: Path, calendar: str, message: str
) -> None:
    rules_dir({"w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n"})
    (tmp_path / "crmflow.yaml").write_text(f"calendar: {calendar}\n")
    result = cli("lint", "rules")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1 and result.err.startswith(f"crmflow: {message}")


def test_the_daemon_plans_by_business_days(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.rules(
            {
                "nudge.yaml": """
                    id: nudge
                    entity: deal
                    trigger: {on: updated, fields: [stage]}
                    conditions: {stage: {changed_to: won}}
                    actions:
                      - warn: "hand over {{ deal.name }}"
                        delay: 2bd
                        within: business_hours
                    """
            }
        )
        rig.configure("calendar: {country: DE, subdivision: BE}\n")
        rig.clock.now = datetime(2026, 12, 24, 16, 30, tzinfo=UTC)  # Thursday 17:30 in Berlin
        rig.start()
        rig.write("UPDATE deals SET stage = 'won', updated_at = {stamp} WHERE id = 1")
        rig.tick(seconds=5)
        due = rig.state("SELECT due_at FROM crmflow_pending WHERE workflow = 'nudge'")
        assert len(due) == 1
        moment = due[0][0]
        when = (
            datetime.fromtimestamp(moment, UTC)
            if isinstance(moment, (int, float))
            else datetime.fromisoformat(str(moment)).replace(tzinfo=UTC)
        )
        # Two business days after Thursday 17:30 is Tuesday 17:30, after hours:
        # the next working moment is Wednesday 09:00 in Berlin.
        assert when.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M") == "Wed 2026-12-30 09:00"
    finally:
        rig.close()


def test_the_calendar_zone_converts_as_its_zone_does_across_clock_changes() -> None:
    """Every minute around Berlin's spring and autumn changes lands where ZoneInfo puts it
    (tzinfo's own fromutc would be an hour off in the hour the clock changes)."""
    from datetime import timedelta

    zone = CalendarZone(BERLIN, calendar_from({"country": "DE"}))
    for start in (
        datetime(2031, 3, 30, 0, 0, tzinfo=UTC),
        datetime(2031, 10, 26, 0, 0, tzinfo=UTC),
    ):
        for minutes in range(0, 180, 7):
            moment = start + timedelta(minutes=minutes)
            ours, theirs = moment.astimezone(zone), moment.astimezone(BERLIN)
            assert (ours.replace(tzinfo=None), ours.fold) == (
                theirs.replace(tzinfo=None),
                theirs.fold,
            )
            assert ours.utcoffset() == theirs.utcoffset()
    # 14 calendar days from the moment after the spring change: the same wall time.
    base = datetime(2031, 3, 30, 1, 0, 27, tzinfo=UTC)
    assert durations.parse("14d").add_to(base, zone) == datetime(2031, 4, 13, 1, 0, 27, tzinfo=UTC)
