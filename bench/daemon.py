"""The daemon on the embedded default (SQLite): a burst of changes, and 100,000 pending actions.

- Burst: 10,000 deals change in one transaction; a workflow creates a task (an inbox
  row) for each. Measured: records per second from the commit to the last task, and
  the lag of the last one.
- Pending: a state database holding 100,000 pending actions (1,000 of them due in the
  next minute, the rest weeks away). Measured: start-up time to the first tick, peak
  memory, and how late each due action fires (p50/p99) against the poll interval.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from crmflow.demo import create_demo_crm

POLL = 1.0  # seconds, the daemon's poll_interval
BURST_RULE = """\
id: inbox
entity: deal
trigger: {on: updated, fields: [probability]}
conditions: {probability: 42}
actions:
  - create:
      entity: task
      values: {title: "Inbox {{ deal.id }}", status: open}
"""
LATER_RULE = """\
id: later
entity: deal
trigger: {on: created}
actions:
  - warn: "follow up on {{ deal.name }}"
    delay: 30d
"""


def _project(folder: Path, rule: str) -> None:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///{folder / "crm.db"}
        state: sqlite:///{folder / "state.db"}
        rules: rules/
        poll_interval: {int(POLL * 1000)}ms
        """),
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "w.yaml").write_text(rule, encoding="utf-8")


def _start(folder: Path) -> subprocess.Popen[bytes]:
    crmflow = str(Path(sys.executable).parent / "crmflow")
    log = (folder / "daemon.log").open("ab")
    return subprocess.Popen(
        [crmflow, "run", "--log-format", "plain"], cwd=folder, stdout=log, stderr=log
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for(query: str, db: Path, until: Any, timeout: float, step: float = 0.05) -> float:
    """Polls `query` until `until(value)`; returns the time.time() it held."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                value = conn.execute(query).fetchone()
            if until(value):
                return time.time()
        except sqlite3.OperationalError:  # not created yet, or busy
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {query!r} on {db.name}")
        time.sleep(step)


def burst(changes: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _project(folder, BURST_RULE)
        crm = folder / "crm.db"
        with sqlite3.connect(crm) as conn:
            conn.executemany(
                "INSERT INTO deals (id, name, probability, updated_at) "
                "VALUES (?, 'burst', 1, '2020-01-01T00:00:00.000Z')",
                [(900_000 + i,) for i in range(changes)],
            )
        proc = _start(folder)
        try:
            # Ready once the baseline is taken: the state holds a watermark for deals.
            _wait_for(
                "SELECT count(*) FROM crmflow_snapshots WHERE entity = 'deal'",
                folder / "state.db",
                lambda row: row[0] >= changes,
                120,
            )
            time.sleep(POLL)
            with sqlite3.connect(crm) as conn:
                conn.execute(
                    "UPDATE deals SET probability = 42, "
                    "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id >= 900000"
                )
            committed = time.time()
            done = _wait_for(
                "SELECT count(*) FROM tasks WHERE title LIKE 'Inbox %'",
                crm,
                lambda row: row[0] >= changes,
                900,
                step=0.1,
            )
        finally:
            _stop(proc)
    lag = done - committed
    return {
        "changes": changes,
        "poll_interval_s": POLL,
        "lag_last_s": round(lag, 2),
        "records_per_s": round(changes / lag, 1),
    }


def pending(total: int = 100_000, due_soon: int = 1_000, window: float = 40.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _project(folder, LATER_RULE)
        state = folder / "state.db"
        # One genuine pending action, made by the daemon from a new deal...
        proc = _start(folder)
        try:
            _wait_for("SELECT count(*) FROM crmflow_daemons", state, lambda r: r[0] > 0, 60)
            with sqlite3.connect(folder / "crm.db") as conn:
                conn.execute(
                    "INSERT INTO deals (id, name, probability, updated_at) VALUES "
                    "(990001, 'seed', 5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
                )
            _wait_for("SELECT count(*) FROM crmflow_pending", state, lambda r: r[0] > 0, 60)
        finally:
            _stop(proc)
        # ... copied into 100,000: `due_soon` of them due within the window after the
        # restart, the others spread over the next 30 days.
        start_at = time.time() + 15
        with sqlite3.connect(state) as conn:
            (template,) = conn.execute("SELECT id FROM crmflow_pending").fetchone()
            columns = [r[1] for r in conn.execute("PRAGMA table_info(crmflow_pending)")]
            copied = [c for c in columns if c not in ("id", "key", "due_at")]
            rows = []
            for n in range(total):
                due = (
                    start_at + window * n / due_soon
                    if n < due_soon
                    else start_at + 86400 * (1 + 29 * n / total)
                )
                rows.append((f"bench-{n}", due, template))
            conn.executemany(
                f"INSERT INTO crmflow_pending (key, due_at, {', '.join(copied)}) "
                f"SELECT ?, ?, {', '.join(copied)} FROM crmflow_pending WHERE id = ?",
                rows,
            )
            conn.execute("DELETE FROM crmflow_pending WHERE id = ?", (template,))
            count = conn.execute("SELECT count(*) FROM crmflow_pending").fetchone()[0]
        started = time.time()
        proc = _start(folder)
        try:
            first_tick = _wait_for(
                "SELECT max(heartbeat_at) FROM crmflow_daemons",
                state,
                lambda r: r[0] is not None and r[0] > started,
                120,
                step=0.01,
            )
            _wait_for(
                "SELECT count(*) FROM crmflow_history WHERE outcome = 'done' "
                "AND key LIKE 'bench-%'",
                state,
                lambda r: r[0] >= due_soon,
                window + 120,
                step=0.5,
            )
            peak_kib = _peak_kib(proc.pid)
        finally:
            _stop(proc)
        with sqlite3.connect(state) as conn:
            late = [
                at - due
                for at, due in conn.execute(
                    "SELECT h.at, p.due_at FROM crmflow_history h "
                    "JOIN crmflow_pending p ON p.key = h.key "
                    "WHERE h.outcome = 'done' AND h.key LIKE 'bench-%'"
                )
            ]
    late.sort()
    return {
        "pending": count,
        "due_in_window": due_soon,
        "window_s": window,
        "poll_interval_s": POLL,
        "startup_s": round(first_tick - started, 2),
        "peak_rss_kib": peak_kib,
        "fired": len(late),
        "late_p50_s": round(statistics.median(late), 3),
        "late_p99_s": round(late[int(len(late) * 0.99) - 1], 3),
        "late_max_s": round(late[-1], 3),
    }


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure() -> dict[str, Any]:
    return {"burst": burst(), "pending": pending()}


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    result = {"burst": burst} if which == "burst" else {"pending": pending}
    if which == "all":
        print(json.dumps(measure(), indent=2))
    else:
        print(json.dumps({k: f() for k, f in result.items()}, indent=2))
