"""The daemon in-process, with a clock the test moves: capture, schedule, waits, chains."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from tests.daemonkit import START, Rig, make_rig

ON_DEAL_UPDATE = """
id: watch
entity: deal
trigger: {on: [created, updated, deleted]}
actions:
  - create: {entity: activity, values: {kind: comment, subject: "{{ deal.name }} {{ rule.id }}",
             related_entity: note, related_id: "{{ deal.id }}"}}
"""


@pytest.fixture
def rig(tmp_path: Path, database: str) -> Iterator[Rig]:
    rig = make_rig(tmp_path, database)
    yield rig
    rig.close()


def comments(rig: Rig) -> list[str]:
    return [
        r[0]
        for r in rig.sql("SELECT subject FROM activities WHERE related_entity = 'note' ORDER BY id")
    ]


def test_first_start_is_a_baseline_that_fires_nothing(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.start()
    assert rig.tick(seconds=2).changes == 0
    assert comments(rig) == []
    assert "baseline of deal: 8 record(s), nothing fired" in rig.out.getvalue()


def test_created_updated_and_deleted_are_seen_once(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.start()
    rig.clock.advance(seconds=5)
    rig.write(
        "INSERT INTO deals (id, name, stage, updated_at, updated_by) "
        "VALUES (100, 'New one', 'qualification', {stamp}, {by})"
    )
    rig.write("UPDATE deals SET amount = 1, updated_at = {stamp}, updated_by = {by} WHERE id = 2")
    rig.tick(seconds=1)
    rig.tick(seconds=1)  # the overlap re-reads both rows: no second evaluation
    # Rows sharing a timestamp come in id order.
    assert comments(rig) == ["Lumière shop relaunch watch", "New one watch"]
    events = rig.state("SELECT record_id, detail FROM crmflow_history WHERE outcome = 'fired'")
    assert [e[0] for e in events] == ["2", "100"]
    rig.write("DELETE FROM deals WHERE id = 100")
    rig.tick(seconds=61)  # hard deletes are found by the slower id scan
    assert comments(rig)[-1] == "New one watch"
    assert len(comments(rig)) == 3


def test_previous_and_actor_come_from_the_snapshot_and_updated_by(rig: Rig) -> None:
    rig.rules(
        {
            "w.yaml": """
        id: stage-change
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_from: proposal}}
        actions:
          - warn: "{{ previous.stage }} -> {{ deal.stage }} by {{ actor }}"
        """
        }
    )
    rig.start()
    rig.clock.advance(seconds=5)
    rig.write(
        "UPDATE deals SET stage = 'negotiation', updated_at = {stamp}, updated_by = {by} "
        "WHERE id = 2",
        by=4,
    )
    rig.tick(seconds=1)
    done = [d for o, d in rig.history("stage-change") if o == "done"]
    assert done == ["warning: proposal -> negotiation by 4 (inbox row for user 4)"]


def test_many_rows_sharing_one_timestamp_and_a_late_commit(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.start()
    rig.clock.advance(seconds=5)
    stamp = rig.clock.now
    rig.write(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n "
        "WHERE v < 1000) INSERT INTO deals (id, name, updated_at) "
        "SELECT 1000 + v, 'bulk ' || v, {stamp} FROM n"
    )
    rig.tick(seconds=1)
    assert len(comments(rig)) == 1000
    # A write stamped 5 s ago commits only now (within the 10 s overlap): still seen.
    late = stamp
    rig.clock.advance(seconds=5)
    with_late = late.isoformat().replace("+00:00", "Z")
    rig.sql(f"UPDATE deals SET name = 'late', updated_at = '{with_late}' WHERE id = 1")
    rig.tick(seconds=1)
    rig.tick(seconds=1)
    assert comments(rig).count("late watch") == 1
    assert len(comments(rig)) == 1001


def test_triggers_mode_sees_a_row_created_and_deleted_between_polls(rig: Rig) -> None:
    rig.configure("change_capture: triggers\n")
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.start()
    rig.write("INSERT INTO deals (id, name, updated_at) VALUES (200, 'fleeting', {stamp})")
    rig.write("DELETE FROM deals WHERE id = 200")
    rig.write("UPDATE deals SET name = 'renamed', updated_at = {stamp} WHERE id = 1")
    rig.tick(seconds=1)
    rig.tick(seconds=1)
    fired = rig.state("SELECT record_id FROM crmflow_history WHERE outcome = 'fired' ORDER BY id")
    assert [f[0] for f in fired] == ["200", "200", "1"]
    assert comments(rig).count("renamed watch") == 1


DELAYED = """
id: later
entity: quote
trigger: {on: created}
conditions: {status: {not_in: [accepted, closed]}}
actions:
  - create: {entity: task, values: {title: "Follow up {{ quote.number }}", status: open}}
    delay: 14d
"""


def test_a_delayed_action_fires_when_due_and_rechecks_conditions(rig: Rig) -> None:
    rig.rules({"w.yaml": DELAYED})
    rig.start()
    rig.write(
        "INSERT INTO quotes (id, number, status, updated_at) VALUES "
        "(50, 'Q-50', 'sent', {stamp}), (51, 'Q-51', 'sent', {stamp})"
    )
    rig.tick(seconds=1)
    assert rig.state(
        "SELECT count(*) FROM crmflow_pending WHERE status = 'pending' AND action_type = 'create'"
    ) == [(2,)]
    rig.clock.advance(days=7)
    rig.write("UPDATE quotes SET status = 'accepted', updated_at = {stamp} WHERE id = 51")
    rig.tick(seconds=1)
    rig.tick(days=7)
    titles = [r[0] for r in rig.sql("SELECT title FROM tasks WHERE title LIKE 'Follow up Q-%'")]
    assert titles == ["Follow up Q-50"]
    cancelled = rig.state("SELECT last_error FROM crmflow_pending WHERE status = 'cancelled'")
    assert cancelled == [
        ('conditions no longer hold: status not_in ["accepted", "closed"]: was accepted',)
    ]


def test_a_date_trigger_moves_when_the_date_changes(rig: Rig) -> None:
    rig.rules(
        {
            "w.yaml": """
        id: anniversary
        entity: contract
        trigger: {date: start_date, offset: 1y, time: "09:00"}
        conditions: {status: active}
        actions: [{warn: "one year of {{ contract.name }}"}]
        """
        }
    )
    rig.start()
    planned_at_start = rig.state(
        "SELECT count(*) FROM crmflow_pending WHERE workflow = 'anniversary' AND record_id = '1'"
    )[0][0]
    rig.write("UPDATE contracts SET start_date = '2026-12-01', updated_at = {stamp} WHERE id = 1")
    rig.tick(seconds=1)
    rig.write("UPDATE contracts SET start_date = '2026-12-15', updated_at = {stamp} WHERE id = 1")
    rig.tick(seconds=1)
    rows = rig.state(
        "SELECT status, due_at FROM crmflow_pending WHERE workflow = 'anniversary' "
        "AND record_id = '1' ORDER BY id"
    )[planned_at_start:]
    assert [r[0] for r in rows] == ["cancelled", "pending"]
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(rows[1][1], UTC).isoformat() == "2027-12-15T08:00:00+00:00"


WAIT = """
id: nudge
entity: deal
trigger: {on: created}
actions:
  - warn: hello
  - wait: {for: 3d, until: {last_activity_at: {changed: true}}, on_met: stop}
  - create: {entity: task, values: {title: "Call about {{ deal.name }}", status: open}}
"""


def test_wait_until_ends_early_on_a_new_activity(rig: Rig) -> None:
    rig.rules({"w.yaml": WAIT})
    rig.start()
    rig.write(
        "INSERT INTO deals (id, name, updated_at) VALUES (300, 'Busy', {stamp}), "
        "(301, 'Quiet', {stamp})"
    )
    rig.tick(seconds=1)
    rig.clock.advance(days=1)
    rig.write(
        "INSERT INTO activities (kind, subject, related_entity, related_id, at) "
        "VALUES ('call', 'Called', 'deal', 300, {stamp})"
    )
    # The demo's trigger stamps the deal with the real clock; the rig's clock is elsewhere.
    rig.write("UPDATE deals SET updated_at = {stamp} WHERE id = 300")
    rig.tick(seconds=1)
    rig.tick(days=3)
    titles = [r[0] for r in rig.sql("SELECT title FROM tasks WHERE title LIKE 'Call about%'")]
    assert titles == ["Call about Quiet"]
    statuses = rig.state("SELECT record_id, action_type, status FROM crmflow_pending ORDER BY id")
    assert statuses == [
        ("300", "wait", "done"),
        ("300", "create", "cancelled"),
        ("301", "wait", "done"),
        ("301", "create", "done"),
    ]


SCHEDULE = """
id: weekday
entity: user
trigger: {schedule: "0 8 * * 1-5", catch_up: %s}
conditions: {id: 1}
actions: [{warn: "good morning"}]
"""


def test_cron_runs_monday_to_friday_in_the_time_zone(rig: Rig) -> None:
    rig.rules({"w.yaml": SCHEDULE % "once"})
    rig.start()  # Monday 09:00 UTC (10:00 Berlin): the first run is Tuesday 08:00 Berlin
    days = []
    for _ in range(7 * 24):
        summary = rig.tick(hours=1)
        if summary.actions:
            days.append(rig.clock.now.astimezone(UTC).strftime("%a %H:%M"))
    assert [d.split()[0] for d in days] == ["Tue", "Wed", "Thu", "Fri", "Mon"]
    assert all(d.endswith("07:00") for d in days)  # 08:00 Berlin is 07:00 UTC in winter


@pytest.mark.parametrize(("catch_up", "runs"), [("once", 1), ("skip", 0)])
def test_downtime_across_cron_runs_follows_catch_up(rig: Rig, catch_up: str, runs: int) -> None:
    rig.rules({"w.yaml": SCHEDULE % catch_up})
    rig.start()
    rig.tick(seconds=1)
    rig.tick(days=3)  # down from Monday to Thursday: three occurrences missed
    done = [d for o, d in rig.history("weekday") if o == "done" and "good morning" in d]
    assert len(done) == runs
    skipped = [d for o, d in rig.history("weekday") if o == "skipped"]
    assert len(skipped) == 1 - runs
    rig.clock.now = rig.clock.now.replace(hour=7, minute=0, second=30) + timedelta(days=1)
    rig.tick()  # Friday's on time
    assert len([d for o, d in rig.history("weekday") if "good morning" in d]) == runs + 1


def test_one_shot_actions_fire_once_after_downtime(rig: Rig) -> None:
    rig.rules({"w.yaml": DELAYED})
    rig.start()
    rig.write(
        "INSERT INTO quotes (id, number, status, updated_at) VALUES (60, 'Q-60', 'sent', {stamp})"
    )
    rig.tick(seconds=1)
    rig.tick(days=30)
    rig.tick(seconds=5)
    assert rig.sql("SELECT count(*) FROM tasks WHERE title = 'Follow up Q-60'") == [(1,)]


LOOP = {
    "a.yaml": """
        id: ping
        entity: deal
        trigger: {on: updated, fields: [amount]}
        actions:
          - update: {target: company, values: {industry: "pinged {{ deal.amount }}"}}
        """,
    "b.yaml": """
        id: pong
        entity: company
        trigger: {on: updated, fields: [industry]}
        actions:
          - update: {target: deals, values: {amount: "{{ (company.deals[0].amount or 0) + 1 }}"}}
        """,
}


def test_a_two_workflow_loop_stops_at_the_bound_and_is_reported(rig: Rig) -> None:
    rig.rules(LOOP)
    rig.configure("chain_depth: 4\n")
    rig.start()
    rig.write("UPDATE deals SET amount = 10, updated_at = {stamp} WHERE id = 1")
    for _ in range(10):
        rig.tick(seconds=1)
    stopped = [d for o, d in rig.history() if o == "loop_stopped"]
    assert len(stopped) == 1 and "loop stopped" in stopped[0]
    fired = [o for o, _ in rig.history("ping") + rig.history("pong") if o == "fired"]
    assert 2 <= len(fired) <= 4
    assert "loop stopped" in rig.out.getvalue()


def test_ignore_actors_crmflow_skips_changes_crmflow_made(rig: Rig) -> None:
    files = dict(LOOP)
    files["b.yaml"] = files["b.yaml"].replace(
        "fields: [industry]}", "fields: [industry], ignore_actors: [crmflow]}"
    )
    rig.rules(files)
    rig.start()
    rig.write("UPDATE deals SET amount = 10, updated_at = {stamp} WHERE id = 1")
    for _ in range(4):
        rig.tick(seconds=1)
    assert [d for o, d in rig.history("pong") if o == "not_fired"] == [
        "trigger ignores changes made by crmflow"
    ]


def test_pause_holds_actions_and_resume_releases_them(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    daemon = rig.start()
    daemon.state.set_flag("paused", "1")
    rig.write("UPDATE deals SET amount = 5, updated_at = {stamp} WHERE id = 3")
    rig.tick(seconds=1)
    rig.tick(seconds=1)
    assert comments(rig) == []
    daemon.state.set_flag("paused", None)
    rig.tick(seconds=1)
    assert comments(rig) == ["Alpenblick booking system watch"]


def test_removed_workflows_cancel_their_pending_actions(rig: Rig) -> None:
    rig.rules({"w.yaml": DELAYED})
    daemon = rig.start()
    rig.write(
        "INSERT INTO quotes (id, number, status, updated_at) VALUES (70, 'Q-70', 'sent', {stamp})"
    )
    rig.tick(seconds=1)
    rig.rules({"other.yaml": ON_DEAL_UPDATE})
    assert daemon.reload_if_changed(force=True)
    assert rig.state(
        "SELECT status, last_error FROM crmflow_pending WHERE action_type = 'create'"
    ) == [("cancelled", "workflow later was removed")]


def test_an_invalid_reload_keeps_the_running_set(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    daemon = rig.start()
    rig.rules({"w.yaml": "id: broken\nentity: deal\n"})
    assert not daemon.reload_if_changed(force=True)
    assert "keeping the running set" in rig.out.getvalue()
    assert [w.id for w in daemon.rules.workflows] == ["watch"]


def test_a_reload_that_lint_rejects_keeps_the_running_set(rig: Rig) -> None:
    """Every lint check, not only the schema: a field typo (CF203) never goes live."""
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    daemon = rig.start()
    rig.rules(
        {
            "w.yaml": ON_DEAL_UPDATE.replace("id: watch", "id: typo")
            + "conditions:\n  - amuont: {gt: 5}\n"
        }
    )
    assert not daemon.reload_if_changed(force=True)
    warnings = [line for line in rig.out.getvalue().splitlines() if "not reloaded" in line]
    assert len(warnings) == 1 and "w.yaml:9:5: CF203" in warnings[0], rig.out.getvalue()
    assert [w.id for w in daemon.rules.workflows] == ["watch"]


def test_a_reload_with_warnings_only_goes_live(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    daemon = rig.start()
    warned = ON_DEAL_UPDATE.replace("id: watch", "id: warned").replace(
        "trigger: {on: [created, updated, deleted]}", "trigger: {on: created, fields: [stage]}"
    )
    rig.rules({"w.yaml": warned})
    assert daemon.reload_if_changed(force=True)
    assert [w.id for w in daemon.rules.workflows] == ["warned"]


def test_a_failed_action_can_be_retried_by_hand(rig: Rig) -> None:
    from crmflow.commands import control

    rig.rules(
        {
            "w.yaml": """
        id: broken
        entity: deal
        trigger: {on: updated}
        actions: [{create: {entity: task, values: {title: "{{ deal.name }}", estimated_hours: x}}}]
        """
        }
    )
    daemon = rig.start()
    rig.write("UPDATE deals SET amount = 5, updated_at = {stamp} WHERE id = 3")
    rig.tick(seconds=1)
    (row,) = control.pending_rows(daemon.state, "failed")
    assert row["status"] == "failed"
    control.retry(daemon.state, row["id"], rig.clock.now)
    rig.tick(seconds=1)
    outcomes = [o for o, _ in rig.history("broken")]
    assert outcomes.count("retried") == 1


def test_history_is_pruned_after_retention(rig: Rig) -> None:
    rig.configure("history_retention: 7d\n")
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.start()
    rig.write("UPDATE deals SET amount = 5, updated_at = {stamp} WHERE id = 3")
    rig.tick(seconds=1)
    before = len(rig.history())
    rig.tick(days=8)
    assert before > 0 and len(rig.history()) == 0
    assert START.year == 2026


def test_rate_limits_spread_webhooks_per_host(rig: Rig) -> None:
    from tests.servers import Web

    with Web() as web:
        rig.configure(f"webhooks: {{allow: ['{web.base}/*'], per_host_per_minute: 2}}\n")
        rig.rules(
            {
                "w.yaml": f"""
            id: hook
            entity: deal
            trigger: {{on: updated}}
            actions: [{{webhook: {{url: "{web.base}/x"}}}}]
            """
            }
        )
        rig.start()
        for deal in (1, 2, 3, 4, 5):
            rig.write(f"UPDATE deals SET amount = 1, updated_at = {{stamp}} WHERE id = {deal}")
        rig.tick(seconds=1)
        assert len(web.hits) == 2
        rig.tick(seconds=30)
        assert len(web.hits) == 2
        rig.tick(seconds=31)
        assert len(web.hits) == 4
        rig.tick(seconds=61)
        assert len(web.hits) == 5


def test_cooldowns_hold_across_restarts(rig: Rig) -> None:
    rig.rules({"w.yaml": ON_DEAL_UPDATE.replace("id: watch", "id: watch\ncooldown: 1d")})
    rig.start()
    rig.write("UPDATE deals SET amount = 1, updated_at = {stamp} WHERE id = 1")
    rig.tick(seconds=1)
    rig.start()  # a restart: a new daemon on the same state
    rig.write("UPDATE deals SET amount = 2, updated_at = {stamp} WHERE id = 1")
    rig.tick(seconds=1)
    assert len(comments(rig)) == 1
    assert any("cooldown 1d" in d for o, d in rig.history("watch") if o == "not_fired")


def test_backfill_previews_then_fires_created_for_existing_records(rig: Rig) -> None:
    rig.rules(
        {
            "w.yaml": """
        id: welcome-existing
        entity: contact
        trigger: {on: created}
        conditions: {email_opt_out: false}
        actions: [{warn: "hello {{ contact.name }}"}]
        """
        }
    )
    from crmflow.config import load_config
    from crmflow.daemon.log import Log
    from crmflow.daemon.loop import Daemon

    daemon = Daemon(
        load_config(rig.folder / "crmflow.yaml"), clock=rig.clock, log=Log("plain", stream=rig.out)
    )
    rig.daemon = daemon
    assert daemon.backfill_preview() == {"welcome-existing": 11}  # 12 contacts, 1 opted out
    daemon.start(backfill=True)
    fired = [d for o, d in rig.history("welcome-existing") if o == "done"]
    assert len(fired) == 11
