"""Looking at and steering a running crmflow: status, pending actions, history, pausing.

These work on the state database alone, so they answer while the daemon runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crmflow import durations
from crmflow.engine.caps import HELD
from crmflow.errors import ConfigError
from crmflow.state.store import (
    PAUSED,
    PendingStatus,
    State,
    daemon_rows,
)
from crmflow.timeutil import format_utc, parse_instant, system_clock


def status(state: State, now: datetime) -> dict[str, Any]:
    last = state.flag("last_poll")
    counts = state.status_counts()
    failures = state.failures_since(now - timedelta(days=1))
    next_due = state.next_due()
    lag = (now - parse_instant(last)).total_seconds() if last else None
    daemons = daemon_rows(state, now)
    return {
        "daemons": daemons,
        "leader": next((d["id"] for d in daemons if d["leader"]), None),
        "last_poll": last,
        "lag_seconds": None if lag is None else round(lag, 1),
        "paused": state.flag(PAUSED) is not None,
        # Workflows held by their limit: cap or by hand, and why.
        "held": {name.removeprefix(HELD): why for name, why in sorted(state.flags(HELD).items())},
        "pending": dict(sorted(counts.items())),
        "next_due": format_utc(next_due) if next_due else None,
        "failures_24h": failures,
        "schema_version": state.version,
    }


def history_rows(
    state: State,
    *,
    workflow: str | None = None,
    record: str | None = None,
    since: str | None = None,
    now: datetime | None = None,
    limit: int = 200,
    outcomes: list[str] | None = None,
    everything: bool = False,
) -> list[dict[str, Any]]:
    """History rows, oldest first. Without a record, outcomes or `everything`, the
    `not_fired` decisions (one per workflow per change) are left out: asked about one
    record, they are the answer to "why did it not fire"."""
    entity = record_id = None
    if record:
        entity, _, record_id = record.partition(":")
        if not record_id:
            raise ConfigError(f"--record {record!r}: write entity:id, e.g. deal:42")
    start = None
    if since:
        try:
            span = durations.parse(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
        start = (now or system_clock()) - timedelta(seconds=span.approx_seconds())
    quiet = not (everything or outcomes or record)
    rows = list(
        state.history(
            limit,
            workflow=workflow,
            entity=entity,
            record_id=record_id,
            since=start,
            outcomes=outcomes,
            without=("not_fired",) if quiet else (),
        )
    )
    for row in rows:
        row["at"] = format_utc(row["at"])
    return list(reversed(rows))


def _pending_row(row: Any) -> dict[str, Any]:
    return {
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


def pending_rows(state: State, status_filter: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for row in state.pending_actions(status_filter):
        if status_filter is None and row.status not in (
            PendingStatus.PENDING,
            PendingStatus.WAITING,
            PendingStatus.RUNNING,
            PendingStatus.QUEUED,
            PendingStatus.FAILED,
        ):
            continue
        rows.append(_pending_row(row))
    return rows


def pending_detail(state: State, action_id: int) -> dict[str, Any]:
    """One pending action whole: its row, key and the event it keeps."""
    row = state.get_pending(action_id)
    if row is None:
        raise ConfigError(f"no pending action {action_id}")
    return {**_pending_row(row), "key": row.key, "context": row.context}


def retry_failed(state: State, now: datetime) -> list[str]:
    """Every failed action due again now; what was done, one line each."""
    return [retry(state, row.id, now) for row in state.pending_actions(PendingStatus.FAILED)]


def cancel(state: State, action_id: int) -> str:
    row = state.get_pending(action_id)
    if row is None:
        raise ConfigError(f"no pending action {action_id}")
    if row.status not in (
        PendingStatus.PENDING,
        PendingStatus.WAITING,
        PendingStatus.QUEUED,
        PendingStatus.FAILED,
    ):
        raise ConfigError(
            f"action {action_id} is {row.status}; only pending, waiting, queued or "
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
    # A failed action is tried now; a cancelled one goes back to when it was due (an
    # anniversary e-mail cancelled by mistake must not go out weeks early).
    due = now
    if row.status == PendingStatus.CANCELLED and row.due_at is not None and row.due_at > now:
        due = row.due_at
    state.update_pending(
        action_id, status=PendingStatus.PENDING, due_at=due, attempts=0, last_error=None
    )
    state.record_pending("retried", row, "retry requested by hand")
    what = f"{action_id} ({row.workflow}: {row.action_type})"
    if due > now:
        return f"{what} is pending again, due {format_utc(due)}"
    return f"{what} is due again"
