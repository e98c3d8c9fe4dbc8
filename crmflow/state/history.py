"""History (every decision and action outcome) and cooldowns (when a workflow last fired).

Both are what crmflow remembers of what it did: history for people and for idempotency
(`done_action`: whether an action was carried out, and what it gave later steps),
cooldowns for the evaluator, through StoredCooldowns.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update

from crmflow.state.pending import PendingAction
from crmflow.state.tables import Tables, cooldowns, epoch, history

# Asked once per action a daemon carries out: built once, so SQLAlchemy compiles it once.
_DONE = (
    select(history.c.at, history.c.output)
    .where(history.c.key == bindparam("key"), history.c.outcome == "done")
    .order_by(history.c.id)
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class DoneAction:
    """An action carried out: when, and its output (for `steps.<id>`) if it had one."""

    at: datetime
    output: dict[str, Any] | None


def _output(text: str | None) -> dict[str, Any] | None:
    """A stored output; None for rows written before outputs were kept (schema v3)."""
    if not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


class HistoryStore(Tables):
    """State's methods over crmflow_history and crmflow_cooldowns."""

    def record(
        self,
        outcome: str,
        *,
        workflow: str | None = None,
        entity: str | None = None,
        record_id: Any = None,
        action_index: int | None = None,
        action_type: str | None = None,
        key: str | None = None,
        detail: str = "",
        output: dict[str, Any] | None = None,
    ) -> None:
        """One decision or outcome; `output` is what the action gave later steps."""
        # default=str: an odd value from a driver (a Decimal id) must not lose the record.
        stored = None if output is None else json.dumps(output, default=str)
        row = {
            "at": epoch(self.clock()),
            "workflow": workflow,
            "entity": entity,
            "record_id": None if record_id is None else str(record_id),
            "action_index": action_index,
            "action_type": action_type,
            "key": key,
            "outcome": outcome,
            "detail": detail,
            "output": stored,
        }
        if self._queue(history, row):
            return
        with self._begin() as conn:
            conn.execute(insert(history), [row])

    def record_pending(self, outcome: str, row: PendingAction, detail: str = "") -> None:
        """A history entry about a pending action."""
        self.record(
            outcome,
            workflow=row.workflow,
            entity=row.entity,
            record_id=row.record_id,
            action_index=row.action_index,
            action_type=row.action_type,
            key=row.key,
            detail=detail,
        )

    def done_action(self, key: str) -> DoneAction | None:
        """The action with this idempotency key as it was carried out, if it was."""
        queued, complete = self._queued_done(key)
        if queued is not None:
            return DoneAction(datetime.fromtimestamp(queued["at"], UTC), _output(queued["output"]))
        if complete:
            return None
        with self._connect(flush=False) as conn:
            row = conn.execute(_DONE, {"key": key}).first()
        if row is None:
            return None
        return DoneAction(datetime.fromtimestamp(row.at, UTC), _output(row.output))

    def know_done(self, entity: str, ids: list[str]) -> None:
        """Read the done actions of these records into the open unit (nothing without
        one), 500 records to a query: while one of them is `handling`, `done_action`
        answers without a query of its own.

        Complete because an action's key is made from its record, and its history rows
        carry that record: a key not among these rows was not done for that record.
        What is recorded elsewhere meanwhile (another daemon, this one's workers) is not
        seen; the handling thread never asks about an action it handed to the workers,
        and for the rare key of both (a change handled again while a retry of its action
        is due) the CRM's keys still make a write once, and a webhook sent twice goes
        under the same key, as after a kill."""
        unit = self._open_unit()
        if unit is None or not ids:
            return
        with self._connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = (
                    select(history.c.key, history.c.at, history.c.output)
                    .where(
                        history.c.entity == entity,
                        history.c.record_id.in_(chunk),
                        history.c.outcome == "done",
                        history.c.key.is_not(None),
                    )
                    .order_by(history.c.id)
                )
                for key, at, output in conn.execute(query):
                    unit.done.setdefault(key, {"at": at, "output": output})
                unit.known.update((entity, rid) for rid in chunk)

    def history(
        self,
        limit: int = 1000,
        *,
        workflow: str | None = None,
        entity: str | None = None,
        record_id: str | None = None,
        since: datetime | None = None,
        outcomes: Collection[str] | None = None,
        without: Collection[str] = (),
    ) -> Iterator[dict[str, Any]]:
        """Decisions, newest first, optionally of one workflow, one record, since a
        moment, of some outcomes, or without some."""
        query = select(history).order_by(history.c.id.desc()).limit(limit)
        if outcomes:
            query = query.where(history.c.outcome.in_(list(outcomes)))
        if without:
            query = query.where(history.c.outcome.not_in(list(without)))
        if workflow:
            query = query.where(history.c.workflow == workflow)
        if entity is not None:
            query = query.where(history.c.entity == entity, history.c.record_id == record_id)
        if since is not None:
            query = query.where(history.c.at >= since.timestamp())
        with self._connect() as conn:
            for row in conn.execute(query):
                item = dict(row._mapping)
                item["at"] = datetime.fromtimestamp(item["at"], UTC)
                item["output"] = _output(item["output"])
                yield item

    def count(self, table: Table, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def failures_since(self, moment: datetime) -> int:
        """Decisions recorded as failed at or after `moment`."""
        query = (
            select(func.count())
            .select_from(history)
            .where(history.c.outcome == "failed", history.c.at >= moment.timestamp())
        )
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def prune_history(self, before: datetime) -> int:
        with self._begin() as conn:
            result = conn.execute(history.delete().where(history.c.at < epoch(before)))
            return int(result.rowcount or 0)

    # -- cooldowns --------------------------------------------------------------------
    def last_fired(self, workflow: str, entity: str, record_id: Any) -> datetime | None:
        with self._connect() as conn:
            value = conn.execute(
                select(cooldowns.c.fired_at).where(
                    cooldowns.c.workflow == workflow,
                    cooldowns.c.entity == entity,
                    cooldowns.c.record_id == str(record_id),
                )
            ).scalar()
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    def fired(self, workflow: str, entity: str, record_id: Any, at: datetime) -> None:
        with self._begin() as conn:
            found = conn.execute(
                update(cooldowns)
                .where(
                    cooldowns.c.workflow == workflow,
                    cooldowns.c.entity == entity,
                    cooldowns.c.record_id == str(record_id),
                )
                .values(fired_at=epoch(at))
            )
            if not found.rowcount:
                conn.execute(
                    insert(cooldowns).values(
                        workflow=workflow,
                        entity=entity,
                        record_id=str(record_id),
                        fired_at=epoch(at),
                    )
                )


class StoredCooldowns:
    """Cooldowns kept in the state database, so they hold across runs."""

    def __init__(self, state: HistoryStore) -> None:
        self.state = state

    def last(self, rule: str, entity: str, record_id: Any) -> datetime | None:
        return self.state.last_fired(rule, entity, record_id)

    def fired(self, rule: str, entity: str, record_id: Any, at: datetime) -> None:
        self.state.fired(rule, entity, record_id, at)
