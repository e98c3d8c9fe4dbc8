"""A real daemon killed (SIGKILL) while a batch of CRM writes is open: no write is lost
and none is made twice, and no write is recorded as done in the state database unless
it is in the CRM."""

from __future__ import annotations

import os
import random
import sqlite3
import textwrap
import time
from pathlib import Path

from crmflow.crm.demo import create_demo_crm
from tests.daemonproc import DaemonProcess, now_sql, sql, state_sql, wait_until

DEALS = 1500
INBOX = """\
id: inbox
entity: deal
trigger: {on: updated, fields: [probability]}
conditions: {probability: 42}
actions:
  - create: {entity: task, values: {title: "Inbox {{ deal.id }}", status: open}}
  - update: {values: {name: "seen {{ deal.id }}"}}
"""


def _project(folder: Path) -> DaemonProcess:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent("""\
        crm: sqlite:///crm.db
        rules: rules/
        timezone: Europe/Berlin
        poll_interval: 200ms
        """),
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "inbox.yaml").write_text(INBOX, encoding="utf-8")
    return DaemonProcess(folder)


def _tasks(folder: Path) -> int:
    return int(sql(folder, "SELECT count(*) FROM tasks WHERE title LIKE 'Inbox %'")[0][0])


def _recorded_but_not_written(folder: Path) -> set[str]:
    """Keys the state records as done whose CRM write is not in crmflow_applied."""
    done = {
        str(k)
        for (k,) in state_sql(
            folder, "SELECT key FROM crmflow_history WHERE workflow = 'inbox' AND outcome = 'done'"
        )
    }
    applied = {str(k) for (k,) in sql(folder, "SELECT key FROM crmflow_applied")}
    return done - applied


def test_sigkill_inside_open_crm_batches_loses_and_doubles_nothing(tmp_path: Path) -> None:
    daemon = _project(tmp_path)
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        conn.execute(
            "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?) "
            "INSERT INTO deals (id, name, probability, updated_at) "
            "SELECT 80000 + v, 'burst', 1, '2020-01-01T00:00:00.000Z' FROM n",
            (DEALS,),
        )
    daemon.start()
    wait_until(lambda: state_sql(tmp_path, "SELECT count(*) FROM crmflow_snapshots")[0][0] >= DEALS)
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        conn.execute(
            f"UPDATE deals SET probability = 42, updated_at = {now_sql()} WHERE id > 80000"
        )
    rng = random.Random(int(os.environ.get("CRMFLOW_KILL_SEED", "11")))
    kills = 0
    for _ in range(4):
        # Killed once some of the burst is written and more is on its way: mid-batch.
        reached = _tasks(tmp_path) + rng.randint(50, 300)
        wait_until(lambda r=reached: _tasks(tmp_path) >= r or _tasks(tmp_path) >= DEALS, every=0.01)
        if _tasks(tmp_path) >= DEALS:
            break
        daemon.kill()
        kills += 1
        assert _recorded_but_not_written(tmp_path) == set()
        daemon.start()
    assert kills >= 2, "the burst ended before the daemon could be killed inside it"
    wait_until(
        lambda: (
            state_sql(tmp_path, "SELECT count(*) FROM crmflow_inflight")[0][0] == 0
            and _tasks(tmp_path) >= DEALS
        ),
        timeout=120,
    )
    time.sleep(0.5)  # a poll more: nothing further may come
    assert daemon.stop() == 0
    # Each deal has one task and its update, each key applied once.
    per_deal = sql(
        tmp_path,
        "SELECT count(*), count(DISTINCT title) FROM tasks WHERE title LIKE 'Inbox %'",
    )
    assert per_deal == [(DEALS, DEALS)]
    assert sql(tmp_path, "SELECT count(*) FROM deals WHERE name LIKE 'seen %'") == [(DEALS,)]
    applied = sql(tmp_path, "SELECT count(*), count(DISTINCT key) FROM crmflow_applied")
    assert applied == [(2 * DEALS, 2 * DEALS)]
    assert _recorded_but_not_written(tmp_path) == set()
    # Every action is recorded: done, or skipped as applied before a kill.
    outcomes = state_sql(
        tmp_path,
        "SELECT count(DISTINCT key) FROM crmflow_history WHERE workflow = 'inbox' "
        "AND outcome IN ('done', 'skipped')",
    )
    assert outcomes == [(2 * DEALS,)]
