"""Pending actions: the record of truth for everything that happens later.

Delays, waits, schedules and date triggers are rows of crmflow_pending; the daemon claims
what is due from here, with a lease that runs out if its daemon dies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update

from crmflow.state.tables import Tables, epoch, pending


class PendingStatus(StrEnum):
    """Where a pending action stands (crmflow_pending.status; the values are stored)."""

    PENDING = "pending"  # to run at due_at (a wait: to time out then)
    WAITING = "waiting"  # behind a wait: pending again (or cancelled) when the wait ends
    RUNNING = "running"  # claimed by a daemon until its lease runs out
    DONE = "done"
    FAILED = "failed"  # retryable by hand (`crmflow pending retry`)
    CANCELLED = "cancelled"
    QUEUED = "queued"  # a whole run behind an earlier one (mode: queued; engine/modes.py)


@dataclass
class PendingAction:
    id: int
    key: str
    workflow: str
    workflow_version: str
    entity: str
    record_id: str | None
    action_index: int
    action_type: str
    due_at: datetime | None
    status: str
    attempts: int
    wait_id: int | None
    context: dict[str, Any]
    last_error: str | None
    created_at: float = 0.0  # epoch seconds: when the action was first stored


def _pending(row: Any) -> PendingAction:
    m = row._mapping
    due = datetime.fromtimestamp(m["due_at"], UTC) if m["due_at"] is not None else None
    return PendingAction(
        m["id"],
        m["key"],
        m["workflow"],
        m["workflow_version"],
        m["entity"],
        m["record_id"],
        m["action_index"],
        m["action_type"],
        due,
        m["status"],
        m["attempts"],
        m["wait_id"],
        json.loads(m["context"]),
        m["last_error"],
        m["created_at"],
    )


class PendingStore(Tables):
    """State's methods over crmflow_pending."""

    def schedule(
        self,
        *,
        key: str,
        workflow: str,
        workflow_version: str,
        entity: str,
        record_id: Any,
        action_index: int,
        action_type: str,
        due: datetime | None,
        context: dict[str, Any],
        status: str = PendingStatus.PENDING,
        wait_id: int | None = None,
    ) -> int | None:
        """Store an action for later; None when the same key is already stored."""
        now = epoch(self.clock())
        row = {
            "key": key,
            "workflow": workflow,
            "workflow_version": workflow_version,
            "entity": entity,
            "record_id": None if record_id is None else str(record_id),
            "action_index": action_index,
            "action_type": action_type,
            "due_at": None if due is None else epoch(due),
            "status": status,
            "attempts": 0,
            "wait_id": wait_id,
            "context": json.dumps(context, default=str),
            "created_at": now,
            "updated_at": now,
        }
        stored = self._insert_new(pending, row, pending.c.id)
        return None if stored is None else int(stored)

    def pending_id(self, key: str) -> int | None:
        """The id of the row stored under `key`, if any."""
        with self._connect() as conn:
            found = conn.execute(select(pending.c.id).where(pending.c.key == key)).scalar()
        return None if found is None else int(found)

    def pending_actions(self, status: str | None = None) -> list[PendingAction]:
        query = select(pending).order_by(pending.c.due_at, pending.c.id)
        if status is not None:
            query = query.where(pending.c.status == status)
        with self._connect() as conn:
            return [_pending(row) for row in conn.execute(query)]

    def status_counts(self) -> dict[str, int]:
        """How many pending-action rows hold each status."""
        query = select(pending.c.status, func.count()).group_by(pending.c.status)
        with self._connect() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    def next_due(self) -> datetime | None:
        with self._connect() as conn:
            value = conn.execute(
                select(func.min(pending.c.due_at)).where(pending.c.status == PendingStatus.PENDING)
            ).scalar()
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    def get_pending(self, action_id: int) -> PendingAction | None:
        with self._connect() as conn:
            row = conn.execute(select(pending).where(pending.c.id == action_id)).first()
        return _pending(row) if row is not None else None

    def find_pending(
        self,
        *,
        workflow: str | None = None,
        entity: str | None = None,
        record_id: Any = None,
        action_type: str | None = None,
        statuses: tuple[str, ...] = (PendingStatus.PENDING, PendingStatus.WAITING),
    ) -> list[PendingAction]:
        query = select(pending).where(pending.c.status.in_(statuses))
        if workflow is not None:
            query = query.where(pending.c.workflow == workflow)
        if entity is not None:
            query = query.where(pending.c.entity == entity)
        if record_id is not None:
            query = query.where(pending.c.record_id == str(record_id))
        if action_type is not None:
            query = query.where(pending.c.action_type == action_type)
        with self._connect() as conn:
            return [_pending(row) for row in conn.execute(query.order_by(pending.c.id))]

    def update_pending(self, action_id: int, **values: Any) -> None:
        if "due_at" in values and isinstance(values["due_at"], datetime):
            values["due_at"] = epoch(values["due_at"])
        if "context" in values and not isinstance(values["context"], str):
            values["context"] = json.dumps(values["context"], default=str)
        values["updated_at"] = epoch(self.clock())
        with self._begin() as conn:
            conn.execute(update(pending).where(pending.c.id == action_id).values(**values))

    def claim_due(
        self, now: datetime, owner: str, lease: float, limit: int = 100
    ) -> list[PendingAction]:
        """Due rows (and rows whose claim ran out) claimed for `owner` for `lease` seconds.

        On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so daemons sharing
        the state never claim the same row; on SQLite there is one daemon.
        """
        moment = epoch(now)
        with self._begin() as conn:
            query = (
                select(pending.c.id)
                .where(
                    ((pending.c.status == PendingStatus.PENDING) & (pending.c.due_at <= moment))
                    | (
                        (pending.c.status == PendingStatus.RUNNING)
                        & (pending.c.lease_until < moment)
                    )
                )
                .order_by(pending.c.due_at, pending.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = [row[0] for row in conn.execute(query)]
            if not ids:
                return []
            conn.execute(
                update(pending)
                .where(pending.c.id.in_(ids))
                .values(
                    status=PendingStatus.RUNNING,
                    owner=owner,
                    lease_until=moment + lease,
                    attempts=pending.c.attempts + 1,
                    updated_at=moment,
                )
            )
            rows = conn.execute(
                select(pending)
                .where(pending.c.id.in_(ids))
                .order_by(pending.c.due_at, pending.c.id)
            )
            return [_pending(row) for row in rows]

    def release(self, ids: list[int], owner: str, due: datetime | None = None) -> None:
        """Rows `owner` claimed and did not try after all: pending again (at `due`, if
        given), their claims' count of attempts given back; one statement for them all.
        A row whose claim ran out and was taken by another is left to that one."""
        if not ids:
            return
        moved = {} if due is None else {"due_at": epoch(due)}
        with self._begin() as conn:
            conn.execute(
                update(pending)
                .where(
                    pending.c.id.in_(ids),
                    pending.c.status == PendingStatus.RUNNING,
                    pending.c.owner == owner,
                )
                .values(
                    status=PendingStatus.PENDING,
                    **moved,
                    attempts=func.max(pending.c.attempts - 1, 0)
                    if conn.dialect.name == "sqlite"
                    else func.greatest(pending.c.attempts - 1, 0),
                    updated_at=epoch(self.clock()),
                )
            )

    def take_queued(self, action_id: int) -> bool:
        """End a queued run's row as released; False when it was no longer queued."""
        with self._begin() as conn:
            result = conn.execute(
                update(pending)
                .where(pending.c.id == action_id, pending.c.status == PendingStatus.QUEUED)
                .values(status=PendingStatus.DONE, updated_at=epoch(self.clock()))
            )
            return bool(result.rowcount)

    def requeue_running(self, owner: str | None = None, keep: frozenset[int] = frozenset()) -> int:
        """Rows left running (by a crash, or by `owner`'s tick that a fault cut off) go
        back to pending; their effect may be repeated, under the same key. `keep`: rows
        still in hand (queued or running on the daemon's workers), left alone."""
        query = update(pending).where(pending.c.status == PendingStatus.RUNNING)
        if owner is not None:
            query = query.where(pending.c.owner == owner)
        if keep:
            query = query.where(pending.c.id.not_in(sorted(keep)))
        with self._begin() as conn:
            result = conn.execute(query.values(status=PendingStatus.PENDING))
            return int(result.rowcount or 0)
