"""The daemon on its own: a burst of changes, and 100,000 pending actions.

- Burst: 10,000 deals change in one transaction; a workflow creates a task (an inbox
  row) for each. Measured: records per second from the commit to the last task, and
  the lag of the first one (mostly the wait for the next poll) and of the last one.
  SQLite by default; `bench.cluster` runs it on PostgreSQL.
- Pending (SQLite): a state database holding 100,000 pending actions (1,000 of them due
  in the next minute, the rest weeks away). Measured: start-up time to the first tick,
  peak memory, and how late each due action fires (p50/p99) against the poll interval.
- Webhooks (SQLite): 600 delayed webhooks fall due together, to a receiver answering
  each after 50 ms. Measured: actions per second from the first to the last done, and
  the most requests the receiver held at once; beside the committed code.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench import daemons

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
# An ISO UTC timestamp of the database's clock, as a CRM application stamps updated_at.
NOW_SQL = {
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    "postgresql": "to_char(clock_timestamp() AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')',
}


def _wait_for(
    engine: Engine, query: str, until: Callable[[Any], bool], timeout: float, step: float = 0.05
) -> Any:
    """Polls `query` until `until(row)` holds; returns that row."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as conn:
                row = conn.execute(text(query)).one()
            if until(row):
                return row
        except Exception:  # the table is not there yet, or the database is busy
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {query!r}")
        time.sleep(step)


def burst(
    changes: int = 10_000,
    crm_url: str | None = None,
    state_url: str | None = None,
    *,
    code: Path | None = None,
) -> dict[str, Any]:
    """A burst of `changes` updated deals to their inbox rows (SQLite files by default);
    `code`: run another crmflow package (daemons.committed_code)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        crm_url = crm_url or f"sqlite:///{folder / 'crm.db'}"
        state_url = state_url or f"sqlite:///{folder / 'state.db'}"
        daemons.project(
            folder, crm_url, BURST_RULE, state_url=state_url, poll_interval=f"{int(POLL)}s"
        )
        crm, state = create_engine(crm_url), create_engine(state_url)
        stamp = NOW_SQL[crm.dialect.name]
        with crm.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO deals (id, name, probability, updated_at) "
                    "VALUES (:id, 'burst', 1, '2020-01-01T00:00:00.000Z')"
                ),
                [{"id": 900_000 + i} for i in range(changes)],
            )
        procs = daemons.start(folder, code=code)
        try:
            # The baseline is taken once every deal has its snapshot.
            _wait_for(
                state,
                "SELECT count(*) FROM crmflow_snapshots WHERE entity = 'deal'",
                lambda row: row[0] >= changes,
                120,
            )
            time.sleep(POLL)
            with crm.begin() as conn:
                conn.execute(
                    text(
                        f"UPDATE deals SET probability = 42, updated_at = {stamp} "
                        "WHERE id >= 900000"
                    )
                )
            committed = time.time()
            # The first row: the wait for the daemon's next poll, the poll and the first
            # batch; from there to the last row, the handling of the other batches.
            _wait_for(
                crm,
                "SELECT count(*) FROM tasks WHERE title LIKE 'Inbox %'",
                lambda row: row[0] > 0,
                900,
                step=0.02,
            )
            first = time.time() - committed
            _wait_for(
                crm,
                "SELECT count(*) FROM tasks WHERE title LIKE 'Inbox %'",
                lambda row: row[0] >= changes,
                900,
                step=0.1,
            )
            lag = time.time() - committed
        finally:
            daemons.stop(procs)
            crm.dispose()
            state.dispose()
    return {
        "changes": changes,
        "database": crm_url.split(":", 1)[0],
        "poll_interval_s": POLL,
        "lag_first_s": round(first, 2),
        "lag_last_s": round(lag, 2),
        "records_per_s": round(changes / lag, 1),
    }


def pending(total: int = 100_000, due_soon: int = 1_000, window: float = 40.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state = folder / "state.db"
        daemons.project(
            folder,
            f"sqlite:///{folder / 'crm.db'}",
            LATER_RULE,
            state_url=f"sqlite:///{state}",
            poll_interval=f"{int(POLL)}s",
        )
        engine = create_engine(f"sqlite:///{state}")
        # One genuine pending action, made by the daemon from a new deal...
        procs = daemons.start(folder)
        try:
            with sqlite3.connect(folder / "crm.db") as conn:
                conn.execute(
                    "INSERT INTO deals (id, name, probability, updated_at) VALUES "
                    f"(990001, 'seed', 5, {NOW_SQL['sqlite']})"
                )
            _wait_for(engine, "SELECT count(*) FROM crmflow_pending", lambda r: r[0] > 0, 60)
        finally:
            daemons.stop(procs)
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
        procs = daemons.start(folder)
        try:
            # The daemon's own stamp of its first tick, not the moment this loop saw it.
            (first_tick,) = _wait_for(
                engine,
                "SELECT max(heartbeat_at) FROM crmflow_daemons",
                lambda r: r[0] is not None and r[0] > started,
                120,
                step=0.01,
            )
            _wait_for(
                engine,
                "SELECT count(*) FROM crmflow_history WHERE outcome = 'done' "
                "AND key LIKE 'bench-%'",
                lambda r: r[0] >= due_soon,
                window + 120,
                step=0.5,
            )
            peak_kib = _peak_kib(procs[0].pid)
        finally:
            daemons.stop(procs)
            engine.dispose()
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


HOOK_RULE = """\
id: hook
entity: deal
trigger: {{on: created}}
actions:
  - webhook: {{url: "http://127.0.0.1:{port}/in", body: {{deal: "{{{{ deal.id }}}}"}}}}
    delay: 5s
"""


def webhooks(actions: int = 600, *, code: Path | None = None) -> dict[str, Any]:
    """`actions` webhooks due at once, to a receiver answering after 50 ms, on one daemon
    (SQLite); `code`: run another crmflow package (daemons.committed_code)."""
    with tempfile.TemporaryDirectory() as tmp, daemons.receiver(0.05) as receiver:
        folder = Path(tmp)
        state = folder / "state.db"
        daemons.project(
            folder,
            f"sqlite:///{folder / 'crm.db'}",
            HOOK_RULE.format(port=receiver.port),
            state_url=f"sqlite:///{state}",
            poll_interval=f"{int(POLL)}s",
            extra=f"webhooks: {{allow: ['http://127.0.0.1:{receiver.port}/*']}}\n",
        )
        procs = daemons.start(folder, code=code)
        engine = create_engine(f"sqlite:///{state}")
        try:
            with sqlite3.connect(folder / "crm.db") as conn:
                conn.executemany(
                    "INSERT INTO deals (id, name, probability, updated_at) VALUES "
                    f"(?, 'hook', 5, {NOW_SQL['sqlite']})",
                    [(700_000 + n,) for n in range(actions)],
                )
            done = "SELECT count(*) FROM crmflow_pending WHERE status = 'done'"
            _wait_for(engine, done, lambda r: r[0] > 0, 120, step=0.01)
            first = time.monotonic()
            _wait_for(engine, done, lambda r: r[0] >= actions, 600, step=0.02)
            took = time.monotonic() - first
        finally:
            daemons.stop(procs)
            engine.dispose()
    return {
        "actions": actions,
        "receiver_delay_ms": 50,
        "actions_per_s": round(actions / took, 1),
        "most_at_once": receiver.most,
        "requests": receiver.count,
    }


def webhooks_before_after(actions: int = 600) -> dict[str, Any]:
    """`webhooks` with this code, and with the committed code beside it."""
    after = webhooks(actions)
    with tempfile.TemporaryDirectory() as tmp:
        code = daemons.committed_code(Path(tmp))
        before = webhooks(actions, code=code) if code is not None else None
    if before is not None:
        after["before_actions_per_s"] = before["actions_per_s"]
        after["before_most_at_once"] = before["most_at_once"]
        after["ratio"] = round(after["actions_per_s"] / before["actions_per_s"], 2)
    return after


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def burst_before_after(
    changes: int = 10_000, urls: Callable[[], tuple[str | None, str | None]] | None = None
) -> dict[str, Any]:
    """`burst` with this code, and with the committed code beside it (same machine, same
    minute): `urls` gives fresh (CRM, state) URLs for each run (SQLite files: None)."""
    fresh = urls or (lambda: (None, None))
    after = burst(changes, *fresh())
    with tempfile.TemporaryDirectory() as tmp:
        code = daemons.committed_code(Path(tmp))
        before = burst(changes, *fresh(), code=code) if code is not None else None
    if before is not None:
        after["before_records_per_s"] = before["records_per_s"]
        after["before_lag_first_s"] = before["lag_first_s"]
        after["before_lag_last_s"] = before["lag_last_s"]
        after["ratio"] = round(after["records_per_s"] / before["records_per_s"], 2)
    return after


def measure() -> dict[str, Any]:
    return {
        "burst": burst_before_after(),
        "pending": pending(),
        "webhooks": webhooks_before_after(),
    }


if __name__ == "__main__":
    parts = {"burst": burst_before_after, "pending": pending, "webhooks": webhooks_before_after}
    chosen = sys.argv[1:] or list(parts)
    print(json.dumps({name: parts[name]() for name in chosen}, indent=2))
