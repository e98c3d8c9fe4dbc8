"""status, pending, history, schedule, pause/resume and tick through the entry point."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from crmflow.crm.database import iso_utc
from crmflow.timeutil import format_utc
from tests.conftest import Result

BERLIN = ZoneInfo("Europe/Berlin")  # the zone `init` writes into crmflow.yaml

Cli = Callable[..., Result]


def demo(cli: Cli, tmp_path: Path) -> Path:
    assert cli("init", "demo").code == 0
    return tmp_path / "demo"


def test_tick_status_history_pending_schedule(cli: Cli, tmp_path: Path) -> None:
    # `init` dates the demo rows by the real clock, so this test's "now" is the real one too:
    # a tick --now in another month would find every demo row ahead of it.
    now = datetime.now(UTC).replace(microsecond=0)
    folder = demo(cli, tmp_path)
    first = cli("tick", "--now", format_utc(now), cwd=folder)
    assert first.code == 0, first.err
    # The daemon's notes are log lines (stderr); the summary is the answer (stdout).
    assert "baseline of deal: 8 record(s), nothing fired" in first.err
    created = now + timedelta(seconds=5)
    with sqlite3.connect(folder / "crm.db") as conn:
        conn.execute(
            "INSERT INTO quotes (id, number, status, owner_id, updated_at, updated_by) "
            "VALUES (99, 'Q-99', 'sent', 1, ?, 1)",
            (iso_utc(created),),
        )
    polled = now + timedelta(seconds=10)
    second = cli("tick", "--now", format_utc(polled), cwd=folder)
    assert second.out.splitlines()[-1] == "1 change(s), 0 due action(s)", second.out + second.err

    status = json.loads(cli("status", "--format", "json", cwd=folder).out)
    assert status["last_poll"] == format_utc(polled)
    # The quote's follow-up, the next run of each of the two schedules, and the
    # anniversaries of the two active demo contracts (planned for existing records on
    # the first start).
    assert status["pending"] == {"pending": 5}
    assert status["paused"] is False and status["schema_version"] >= 2
    assert status["daemons"] == [] and status["leader"] is None  # tick left, and said so

    rows = json.loads(cli("pending", "--format", "json", cwd=folder).out)
    assert sorted(r["workflow"] for r in rows) == [
        "contract-anniversary",
        "contract-anniversary",
        "deals-gone-quiet",
        "lead-no-activity",
        "quote-followup",
    ]
    follow_up = next(r for r in rows if r["workflow"] == "quote-followup")
    # 14d is calendar days in the demo's zone: the same wall-clock time, across a DST change.
    due = format_utc((created.astimezone(BERLIN) + timedelta(days=14)).astimezone(UTC))
    assert follow_up["due"] == due and follow_up["record_id"] == "99"

    history = json.loads(cli("history", "--record", "quote:99", "--format", "json", cwd=folder).out)
    # Asked about one record, history also says why the other quote workflows did not fire.
    assert [h["outcome"] for h in history if h["workflow"] == "quote-followup"] == [
        "scheduled",
        "fired",
    ]
    assert {h["outcome"] for h in history if h["workflow"] != "quote-followup"} <= {"not_fired"}
    assert cli("history", "--record", "quote", cwd=folder).code == 2
    text = cli("history", "--workflow", "quote-followup", cwd=folder).out
    assert f"scheduled   quote-followup create quote:99 due {due}" in text

    cancelled = cli("pending", "cancel", str(follow_up["id"]), cwd=folder)
    assert cancelled.code == 0 and cancelled.out.startswith(f"cancelled {follow_up['id']}")
    assert cli("pending", "cancel", str(follow_up["id"]), cwd=folder).code == 2
    # A cancelled action retried goes back to when it was due, not now.
    retried = cli("pending", "retry", str(follow_up["id"]), cwd=folder)
    assert retried.code == 0
    assert retried.out.strip().endswith(f"is pending again, due {follow_up['due']}")
    again = json.loads(cli("pending", "show", str(follow_up["id"]), "-f", "json", cwd=folder).out)
    assert (again["status"], again["due"]) == ("pending", follow_up["due"])
    assert cli("pending", "cancel", cwd=folder).code == 2
    shown = json.loads(cli("pending", "show", str(follow_up["id"]), "-f", "json", cwd=folder).out)
    assert shown["key"].startswith("cf_") and shown["context"]["event"]["record"]["id"] == 99
    assert cli("pending", "show", "999999", cwd=folder).code == 2
    cancelled_rows = json.loads(
        cli("pending", "list", "--status", "pending", "-f", "json", cwd=folder).out
    )
    assert follow_up["id"] in [r["id"] for r in cancelled_rows]
    assert cli("pending", "retry", "--failed", cwd=folder).out.strip() == "no failed actions"
    assert cli("pending", "retry", cwd=folder).code == 2  # an id or --failed

    schedule = cli("schedule", "--next", "4", cwd=folder).out.splitlines()
    hours = {"deals-gone-quiet": "07:00", "lead-no-activity": "08:00"}  # weekdays, Berlin
    assert len(schedule) == 4
    for line in schedule:
        day, hour, zone, workflow = line.split()[:4]
        local = datetime.fromisoformat(f"{day}T{hour}").replace(tzinfo=BERLIN)
        assert hour == hours[workflow] and local.weekday() < 5 and zone == local.tzname()
    assert {line.split()[3] for line in schedule} == set(hours)


def test_pause_and_resume(cli: Cli, tmp_path: Path) -> None:
    folder = demo(cli, tmp_path)
    assert cli("pause", cwd=folder).out.startswith("paused")
    assert json.loads(cli("status", "-f", "json", cwd=folder).out)["paused"] is True
    assert cli("resume", cwd=folder).out.strip() == "resumed"
    assert json.loads(cli("status", "-f", "json", cwd=folder).out)["paused"] is False


def test_daemon_commands_need_a_configuration(cli: Cli) -> None:
    result = cli("status")
    assert result.code == 2
    assert "no crmflow.yaml here" in result.err


def test_workflows_reload_when_their_files_change(tmp_path: Path) -> None:
    from tests.daemonkit import make_rig

    rig = make_rig(tmp_path)
    rig.rules({"a.yaml": "id: a\nentity: deal\ntrigger: {on: updated}\nactions: [{warn: a}]\n"})
    daemon = rig.start()
    (tmp_path / "rules" / "b.yaml").write_text(
        "id: b\nentity: deal\ntrigger: {on: updated}\nactions: [{warn: b}]\n"
    )
    rig.tick(seconds=1)
    assert sorted(daemon.rules.by_id) == ["a", "b"]
    assert "workflows reloaded: 2 loaded" in rig.out.getvalue()
    rig.close()


def test_history_is_quiet_by_default_and_filters_by_outcome(cli: Cli, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    folder = demo(cli, tmp_path)
    assert cli("tick", "--now", format_utc(now), cwd=folder).code == 0
    with sqlite3.connect(folder / "crm.db") as conn:
        conn.execute(
            "INSERT INTO quotes (id, number, status, owner_id, updated_at, updated_by) "
            "VALUES (98, 'Q-98', 'sent', 1, ?, 1)",
            (iso_utc(now + timedelta(seconds=5)),),
        )
        # A change no deal workflow fires for: each says why not.
        conn.execute(
            "UPDATE deals SET name = 'renamed', updated_at = ?, updated_by = 1 WHERE id = 1",
            (iso_utc(now + timedelta(seconds=5)),),
        )
    assert cli("tick", "--now", format_utc(now + timedelta(seconds=10)), cwd=folder).code == 0

    def outcomes(*args: str) -> set[str]:
        rows = json.loads(cli("history", "--format", "json", *args, cwd=folder).out)
        return {r["outcome"] for r in rows}

    quiet = outcomes()
    assert "not_fired" not in quiet and {"fired", "scheduled"} <= quiet
    assert "not_fired" in outcomes("--all")
    assert outcomes("--outcome", "not_fired") == {"not_fired"}
    assert outcomes("-o", "fired", "-o", "scheduled") == {"fired", "scheduled"}
    assert "not_fired" in outcomes("--record", "deal:1")  # why each workflow did not fire
    wrong = cli("history", "--outcome", "firedd", cwd=folder)
    assert wrong.code == 2 and "firedd" in wrong.err
