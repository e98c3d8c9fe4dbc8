"""Looking at and steering a running crmflow: status, pending actions, history, pausing.

These work on the state database alone, so they answer while the daemon runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crmflow import durations
from crmflow.errors import ConfigError
from crmflow.state.store import (
    GONE_RETENTION,
    PAUSED,
    PendingStatus,
    State,
    gone_since,
    history,
    pending,
)
from crmflow.timeutil import Clock, format_utc, parse_instant, system_clock


def clock_from_env() -> Clock:
    """The system clock, or (for tests and drills) the instant in $CRMFLOW_CLOCK_FILE."""
    path = os.environ.get("CRMFLOW_CLOCK_FILE")
    if not path:
        return system_clock

    def read() -> datetime:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return system_clock()
        return parse_instant(text) if text else system_clock()

    return read


@contextmanager
def single_daemon(state_url: str) -> Iterator[None]:
    """One daemon per SQLite state database: a second one refuses to start."""
    with _state_lock(state_url) as holder:
        if holder is not None:
            raise ConfigError(
                f"another crmflow daemon (pid {holder}) is running on this state "
                f"database; with SQLite only one may"
            )
        yield


@contextmanager
def no_daemon_beside(state_url: str, now: datetime) -> Iterator[None]:
    """`eval` acting on a CRM that a daemon watches refuses, naming the daemon.

    The daemon sees the same change in the CRM and acts on it under its own idempotency
    key (made from its snapshot of the row); eval's key comes from the event it was given.
    Both would act: two inbox rows, two e-mails. While eval runs it holds the daemon's
    lock, so a daemon starting meanwhile refuses instead.
    """
    with _state_lock(state_url, create=False) as holder:
        if holder is not None:
            raise ConfigError(
                f"a crmflow daemon (pid {holder}) is running on this CRM and acts on its "
                "changes itself; evaluate with --dry-run, or stop the daemon first"
            )
        if not state_url.startswith("sqlite:///"):
            state = State(state_url)
            try:
                running = [d for d in daemon_rows(state, now) if d["state"] == "running"]
            finally:
                state.dispose()
            if running:
                first = running[0]
                raise ConfigError(
                    f"{len(running)} crmflow daemon(s) (first: pid {first['pid']} on "
                    f"{first['host']}) run on this CRM and act on its changes themselves; "
                    "evaluate with --dry-run, or stop them first"
                )
        yield


@contextmanager
def _state_lock(state_url: str, *, create: bool = True) -> Iterator[str | None]:
    """The lock beside a SQLite state database: None when taken, else the holder's pid.

    An flock, so it goes with its process however that process ends (even SIGKILL).
    Other databases have no such file; they yield None. Without `create`, a state folder
    that does not exist yet (so no daemon ever ran there) is left unmade, unlocked.
    """
    if not state_url.startswith("sqlite:///"):
        yield None
        return
    path = Path(state_url[len("sqlite:///") :] + ".lock")
    if not create and not path.parent.is_dir():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        yield holder
        return
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield None
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def status(state: State, now: datetime) -> dict[str, Any]:
    last = state.flag("last_poll")
    with state.engine.connect() as conn:
        counts = dict(
            conn.execute(select(pending.c.status, func.count()).group_by(pending.c.status)).all()
        )
        failures = conn.execute(
            select(func.count())
            .select_from(history)
            .where(
                history.c.outcome == "failed", history.c.at >= (now - timedelta(days=1)).timestamp()
            )
        ).scalar_one()
    next_due = state.next_due()
    lag = (now - parse_instant(last)).total_seconds() if last else None
    daemons = daemon_rows(state, now)
    return {
        "daemons": daemons,
        "leader": next((d["id"] for d in daemons if d["leader"]), None),
        "last_poll": last,
        "lag_seconds": None if lag is None else round(lag, 1),
        "paused": state.flag(PAUSED) is not None,
        "pending": {k: int(v) for k, v in sorted(counts.items())},
        "next_due": format_utc(next_due) if next_due else None,
        "failures_24h": int(failures),
        "schema_version": state.version,
    }


def daemon_rows(state: State, now: datetime) -> list[dict[str, Any]]:
    """The daemons sharing this state, each `running` or `gone`, and which one leads.

    A daemon is gone once its last heartbeat is older than the timeout it registered
    with (a daemon killed with SIGKILL never says goodbye); a gone daemon does not lead,
    whatever its row says. Of the running daemons whose rows say they lead, the freshest
    beat wins: two claim it only for the moment between a takeover and the old leader's
    next tick, which clears its flag. Daemons gone for longer than GONE_RETENTION are
    left out, whether or not a leader has deleted their rows yet.
    """
    moment = now.timestamp()
    listed = []
    for row in state.daemons():
        gone_at = gone_since(row)
        if moment - gone_at <= GONE_RETENTION:
            listed.append((row, moment > gone_at))
    claims = [row for row, gone in listed if row["leader"] and not gone]
    leader = max(claims, key=lambda row: row["heartbeat_at"])["id"] if claims else None
    return [
        {
            "id": row["id"],
            "host": row["host"],
            "pid": row["pid"],
            "leader": row["id"] == leader,
            "state": "gone" if gone else "running",
            "seen_seconds_ago": round(moment - row["heartbeat_at"], 1),
        }
        for row, gone in listed
    ]


def history_rows(
    state: State,
    *,
    workflow: str | None = None,
    record: str | None = None,
    since: str | None = None,
    now: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    query = select(history).order_by(history.c.id.desc()).limit(limit)
    if workflow:
        query = query.where(history.c.workflow == workflow)
    if record:
        entity, _, record_id = record.partition(":")
        if not record_id:
            raise ConfigError(f"--record {record!r}: write entity:id, e.g. deal:42")
        query = query.where(history.c.entity == entity, history.c.record_id == record_id)
    if since:
        try:
            span = durations.parse(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
        start = (now or system_clock()) - timedelta(seconds=span.approx_seconds())
        query = query.where(history.c.at >= start.timestamp())
    with state.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["at"] = format_utc(datetime.fromtimestamp(row["at"], UTC))
    return list(reversed(rows))


def pending_rows(state: State, status_filter: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for row in state.pending_actions(status_filter):
        if status_filter is None and row.status not in (
            PendingStatus.PENDING,
            PendingStatus.WAITING,
            PendingStatus.RUNNING,
            PendingStatus.FAILED,
        ):
            continue
        rows.append(
            {
                "id": row.id,
                "workflow": row.workflow,
                "entity": row.entity,
                "record_id": row.record_id,
                "action": row.action_type,
                "index": row.action_index,
                "status": row.status,
                "due": format_utc(row.due_at) if row.due_at else None,
                "attempts": row.attempts,
                "last_error": row.last_error,
            }
        )
    return rows


def cancel(state: State, action_id: int) -> str:
    row = state.get_pending(action_id)
    if row is None:
        raise ConfigError(f"no pending action {action_id}")
    if row.status not in (PendingStatus.PENDING, PendingStatus.WAITING, PendingStatus.FAILED):
        raise ConfigError(
            f"action {action_id} is {row.status}; only pending, waiting or "
            "failed actions can be cancelled"
        )
    state.update_pending(action_id, status=PendingStatus.CANCELLED, last_error="cancelled by hand")
    state.record_pending("cancelled", row, "cancelled by hand")
    return f"cancelled {action_id} ({row.workflow}: {row.action_type})"


def retry(state: State, action_id: int, now: datetime) -> str:
    row = state.get_pending(action_id)
    if row is None:
        raise ConfigError(f"no pending action {action_id}")
    if row.status not in (PendingStatus.FAILED, PendingStatus.CANCELLED):
        raise ConfigError(
            f"action {action_id} is {row.status}; only failed or cancelled actions can be retried"
        )
    state.update_pending(action_id, status=PendingStatus.PENDING, due_at=now, attempts=0)
    state.record_pending("retried", row, "retry requested by hand")
    return f"{action_id} ({row.workflow}: {row.action_type}) is due again"
