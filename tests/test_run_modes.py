"""Run modes (`mode:` per workflow): what a new run for a record does while an earlier
run still has actions waiting, carried out by a real daemon on real SQLite files, and
recorded in the history."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import crmflow_bin
from tests.daemonkit import Rig, make_rig

WORKFLOW = """
    id: nudge
    entity: deal
    trigger: {{on: updated, fields: [probability]}}
    {mode}
    actions:
      - notify: {{to: [owner], subject: "first {{{{ previous.probability }}}}", body: "-"}}
      - notify: {{to: [owner], subject: "later {{{{ previous.probability }}}}", body: "-"}}
        delay: 1h
    """


def rig_with(tmp_path: Path, mode: str) -> Rig:
    rig = make_rig(tmp_path)
    rig.rules({"nudge.yaml": WORKFLOW.format(mode=mode)})
    settle(rig)
    rig.start()
    return rig


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Rig]]:
    rigs: list[Rig] = []
    yield rigs
    for rig in rigs:
        rig.close()


def settle(rig: Rig) -> None:
    """Deal 1 at 50 before the daemon's baseline: a run names the value it came from."""
    rig.write("UPDATE deals SET probability = 50 WHERE id = 1")


def change(rig: Rig, probability: int) -> None:
    rig.write(f"UPDATE deals SET probability = {probability}, updated_at = {{stamp}} WHERE id = 1")


def sent(rig: Rig) -> list[str]:
    rows = rig.sql(
        "SELECT subject FROM notifications WHERE subject LIKE 'first %' "
        "OR subject LIKE 'later %' ORDER BY id"
    )
    return [r[0] for r in rows]


def run_two_changes(rig: Rig) -> None:
    """Probability 60, then 70 ten minutes later (while the first run's later action
    waits), then the clock moves on past every delay."""
    change(rig, 60)
    rig.tick(seconds=1)
    rig.tick(minutes=10)
    change(rig, 70)  # stamped ten minutes after the first: its delay counts from here
    rig.tick(seconds=1)
    rig.tick(minutes=55)  # 1h05 after the first change: the first run's later action
    rig.tick(minutes=10)  # 1h15: the second run's later action, if it runs beside
    rig.tick(hours=2)


def mode_entries(rig: Rig) -> list[tuple[str, str]]:
    return [
        (o, d)
        for o, d in rig.history("nudge")
        if o in ("dropped", "queued", "released") or d.startswith("restarted")
    ]


@pytest.mark.parametrize("mode", ["", "mode: parallel"])
def test_parallel_the_default_runs_beside(made: list[Rig], tmp_path: Path, mode: str) -> None:
    rig = rig_with(tmp_path, mode)
    made.append(rig)
    run_two_changes(rig)
    assert sent(rig) == ["first 50", "first 60", "later 50", "later 60"]
    assert mode_entries(rig) == []


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("mode: single", "mode single: 1 earlier run waiting"),
        ("{mode: parallel, max_runs: 1}", "mode parallel: 1 earlier run waiting (max_runs 1)"),
    ],
)
def test_single_drops_a_run_while_one_waits(
    made: list[Rig], tmp_path: Path, mode: str, why: str
) -> None:
    rig = rig_with(tmp_path, mode.replace("{", "").replace("}", "").replace(", ", "\n    "))
    made.append(rig)
    run_two_changes(rig)
    assert sent(rig) == ["first 50", "later 50"]
    assert mode_entries(rig) == [("dropped", why)]
    # The log says it in one line, as the history does.
    assert f"nudge: run dropped: {why}" in rig.out.getvalue()
    # Once the first run has ended, a new change runs again.
    change(rig, 80)
    rig.tick(minutes=1)
    assert sent(rig)[-1] == "first 70"


def test_restart_cancels_the_waiting_actions_of_the_earlier_run(
    made: list[Rig], tmp_path: Path
) -> None:
    rig = rig_with(tmp_path, "mode: restart")
    made.append(rig)
    run_two_changes(rig)
    assert sent(rig) == ["first 50", "first 60", "later 60"]
    assert mode_entries(rig) == [
        ("cancelled", "restarted: a new run for this record replaces it (mode restart)")
    ]
    cancelled = rig.state(
        "SELECT action_index, last_error FROM crmflow_pending WHERE status = 'cancelled'"
    )
    assert cancelled == [(1, "restarted: a new run for this record replaces it (mode restart)")]


def test_queued_starts_the_next_run_when_the_earlier_ends_across_a_restart(
    made: list[Rig], tmp_path: Path
) -> None:
    rig = rig_with(tmp_path, "mode: queued")
    made.append(rig)
    change(rig, 60)
    rig.tick(seconds=1)
    change(rig, 70)
    rig.tick(minutes=10)
    assert sent(rig) == ["first 50"]  # the second run waits whole, its first action too
    queued = rig.state("SELECT action_type, status FROM crmflow_pending WHERE status = 'queued'")
    assert queued == [("run", "queued")]
    rig.start()  # a new daemon: the queue is in the state database, not in memory
    rig.tick(minutes=55)  # the first run's later action ends it (on a worker thread) ...
    rig.tick(seconds=1)  # ... and the next tick starts the queued run
    assert sent(rig) == ["first 50", "later 50", "first 60"]
    rig.tick(minutes=30)
    assert sent(rig) == ["first 50", "later 50", "first 60"]  # its delay counts from its start
    rig.tick(minutes=30)
    assert sent(rig) == ["first 50", "later 50", "first 60", "later 60"]
    entries = mode_entries(rig)
    assert [o for o, _ in entries] == ["queued", "released"]
    assert (
        entries[0][1] == "mode queued: starts when the runs before it end (1 earlier run waiting)"
    )
    assert rig.state("SELECT count(*) FROM crmflow_pending WHERE status = 'queued'") == [(0,)]


def test_queued_with_max_runs_drops_a_run_past_it(made: list[Rig], tmp_path: Path) -> None:
    rig = rig_with(tmp_path, "mode: queued\n    max_runs: 2")
    made.append(rig)
    for minute, probability in enumerate((60, 70, 80)):
        change(rig, probability)
        rig.tick(minutes=minute + 1)
    assert [o for o, _ in mode_entries(rig)] == ["queued", "dropped"]
    assert mode_entries(rig)[1][1] == ("mode queued: 2 earlier runs waiting or queued (max_runs 2)")
    rig.tick(hours=1)
    rig.tick(hours=1)
    rig.tick(hours=1)
    assert sent(rig) == ["first 50", "later 50", "first 60", "later 60"]


def test_a_queued_run_whose_conditions_no_longer_hold_is_cancelled(
    made: list[Rig], tmp_path: Path
) -> None:
    rig = make_rig(tmp_path)
    made.append(rig)
    rig.rules(
        {
            "nudge.yaml": WORKFLOW.format(mode="mode: queued").replace(
                "actions:", "conditions: {probability: {gte: 50}}\n    actions:", 1
            )
        }
    )
    settle(rig)
    rig.start()
    change(rig, 60)
    rig.tick(seconds=1)
    change(rig, 70)
    rig.tick(minutes=10)
    change(rig, 10)  # no run of its own (below 50), and the queued one no longer holds
    rig.tick(minutes=10)
    rig.tick(hours=1)
    # The first run's later action no longer holds either.
    assert sent(rig) == ["first 50"]
    outcomes = [(o, d) for o, d in rig.history("nudge") if o in ("queued", "released", "cancelled")]
    assert [o for o, _ in outcomes] == ["queued", "cancelled", "released", "cancelled"]
    assert outcomes[1][1].startswith("conditions no longer hold: probability gte")
    assert outcomes[3][1].startswith("no longer fires: probability gte")


@pytest.mark.parametrize(
    ("extra", "trigger", "expected"),
    [
        (
            "mode: single\n    max_runs: 2",
            "{on: updated}",
            "CF228 nudge: max_runs does not apply to mode single: at most one run waits",
        ),
        (
            "mode: queued",
            '{schedule: "0 8 * * *"}',
            "CF228 nudge: mode and max_runs do not apply to a schedule trigger",
        ),
        (
            "mode: restart",
            "{date: expected_close_date}",
            "CF228 nudge: mode and max_runs do not apply to a date trigger",
        ),
    ],
)
def test_lint_refuses_a_mode_that_cannot_apply(
    tmp_path: Path, extra: str, trigger: str, expected: str
) -> None:
    text = WORKFLOW.format(mode=extra).replace(
        "trigger: {on: updated, fields: [probability]}", f"trigger: {trigger}"
    )
    (tmp_path / "nudge.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    done = subprocess.run(
        [crmflow_bin(), "lint", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stdout


def test_lint_warns_of_a_mode_without_anything_that_waits(tmp_path: Path) -> None:
    workflow = (
        "id: nudge\nentity: deal\ntrigger: {on: updated, fields: [probability]}\n"
        "mode: single\nactions:\n  - ACTION\n"
    )
    update = 'update: {values: {name: "seen {{ deal.probability }}"}}'
    (tmp_path / "nudge.yaml").write_text(workflow.replace("ACTION", update), encoding="utf-8")
    done = subprocess.run(
        [crmflow_bin(), "lint", "--strict", str(tmp_path)], capture_output=True, text=True
    )
    assert (
        "CF228 warning: nudge: mode single has no effect: every action of this workflow is "
        "done as its change is handled"
    ) in done.stdout
    assert done.returncode == 1  # --strict: warnings fail
    # An action that goes to another host makes its run wait (the daemon's workers).
    notify = 'notify: {to: [owner], subject: "seen {{ deal.probability }}"}'
    (tmp_path / "nudge.yaml").write_text(workflow.replace("ACTION", notify), encoding="utf-8")
    quiet = subprocess.run(
        [crmflow_bin(), "lint", "--strict", str(tmp_path)], capture_output=True, text=True
    )
    assert quiet.returncode == 0, quiet.stdout


def test_restart_ends_each_waiting_action_once_behind_a_call_being_retried(
    made: list[Rig], tmp_path: Path
) -> None:
    """The earlier run's call failed for now (nobody listens) and waits for its retry;
    the action behind it waits for the call. A restart ends both, each once."""
    from tests.servers import free_port

    port = free_port()  # nothing listens there: the call fails for now, and is retried
    rig = make_rig(tmp_path)
    made.append(rig)
    rig.configure(f'webhooks: {{allow: ["http://127.0.0.1:{port}/*"]}}\n')
    rig.rules(
        {
            "call.yaml": f"""
                id: call
                entity: deal
                trigger: {{on: updated, fields: [probability]}}
                mode: restart
                actions:
                  - webhook: {{url: "http://127.0.0.1:{port}/in"}}
                  - update: {{values: {{name: "called"}}}}
                """
        }
    )
    settle(rig)
    rig.start()
    change(rig, 60)
    rig.tick(seconds=1)
    waiting = rig.state(
        "SELECT action_type, status FROM crmflow_pending WHERE workflow = 'call' ORDER BY id"
    )
    assert waiting == [("webhook", "pending"), ("update", "waiting")]
    rig.tick(seconds=1)
    change(rig, 70)
    rig.tick(seconds=1)
    cancelled = [
        (t, d)
        for t, o, d in rig.state(
            "SELECT action_type, outcome, detail FROM crmflow_history "
            "WHERE workflow = 'call' AND outcome = 'cancelled' ORDER BY id"
        )
    ]
    assert [t for t, _ in cancelled] == ["update", "webhook"]  # each once
    assert cancelled[1][1] == "restarted: a new run for this record replaces it (mode restart)"
    assert cancelled[0][1].startswith("an earlier action of this workflow was cancelled: restarted")
