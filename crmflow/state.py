"""crmflow's own state database: pending actions, history, cooldowns.

The pending table is the record of truth for everything that happens later (delays,
waits, schedules, date triggers): the daemon reads what is due from it. History keeps
every decision. The schema is versioned in `crmflow_meta` and migrated on open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crmflow.errors import ConfigError
from crmflow.timeutil import Clock, system_clock

SCHEMA_VERSION = 1
metadata = MetaData()

meta = Table(
    "crmflow_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)
pending = Table(
    "crmflow_pending",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(80), nullable=False, unique=True),  # idempotency key
    Column("workflow", String(200), nullable=False),
    Column("workflow_version", String(40), nullable=False),
    Column("entity", String(80), nullable=False),
    Column("record_id", String(80)),
    Column("action_index", Integer, nullable=False),
    Column("action_type", String(40), nullable=False),
    Column("due_at", Float),  # epoch seconds, UTC; null: waits for a condition only
    Column("status", String(20), nullable=False),  # pending, waiting, done, failed, cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("wait_id", Integer),  # the wait this action follows, if any
    Column("context", Text, nullable=False),  # JSON: event, kept change results, steps
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_crmflow_pending_due", pending.c.status, pending.c.due_at)
history = Table(
    "crmflow_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("workflow", String(200)),
    Column("entity", String(80)),
    Column("record_id", String(80)),
    Column("action_index", Integer),
    Column("action_type", String(40)),
    Column("key", String(80)),
    Column("outcome", String(20), nullable=False),
    Column("detail", Text),
)
Index("ix_crmflow_history_at", history.c.at)
Index("ix_crmflow_history_record", history.c.entity, history.c.record_id)
Index("ix_crmflow_history_key", history.c.key)
cooldowns = Table(
    "crmflow_cooldowns",
    metadata,
    Column("workflow", String(200), primary_key=True),
    Column("entity", String(80), primary_key=True),
    Column("record_id", String(80), primary_key=True),
    Column("fired_at", Float, nullable=False),
)


def _epoch(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


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


class State:
    """One state database (SQLite by default, PostgreSQL in production)."""

    def __init__(
        self, url: str, *, clock: Clock = system_clock, engine: Engine | None = None
    ) -> None:
        self.clock = clock
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = engine or create_engine(url)
            self._migrate()
        except SQLAlchemyError as exc:
            raise ConfigError(f"state: cannot open the state database: {exc}") from None

    def _migrate(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
            if row is None:
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(
                    f"state: the database has schema version {row[0]}, newer than "
                    f"this crmflow ({SCHEMA_VERSION}); upgrade crmflow"
                )

    @property
    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar_one()
            )

    # -- pending actions --------------------------------------------------------------
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
        status: str = "pending",
        wait_id: int | None = None,
    ) -> int | None:
        """Store an action for later; None when the same key is already stored."""
        now = _epoch(self.clock())
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    insert(pending).values(
                        key=key,
                        workflow=workflow,
                        workflow_version=workflow_version,
                        entity=entity,
                        record_id=None if record_id is None else str(record_id),
                        action_index=action_index,
                        action_type=action_type,
                        due_at=None if due is None else _epoch(due),
                        status=status,
                        attempts=0,
                        wait_id=wait_id,
                        context=json.dumps(context, default=str),
                        created_at=now,
                        updated_at=now,
                    )
                )
                return int(result.inserted_primary_key[0])
        except IntegrityError:
            return None

    def pending_actions(self, status: str | None = None) -> list[PendingAction]:
        query = select(pending).order_by(pending.c.due_at, pending.c.id)
        if status is not None:
            query = query.where(pending.c.status == status)
        with self.engine.connect() as conn:
            return [self._pending(row) for row in conn.execute(query)]

    def set_status(self, action_id: int, status: str, error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(pending)
                .where(pending.c.id == action_id)
                .values(status=status, last_error=error, updated_at=_epoch(self.clock()))
            )

    @staticmethod
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
        )

    # -- history ----------------------------------------------------------------------
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
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(history).values(
                    at=_epoch(self.clock()),
                    workflow=workflow,
                    entity=entity,
                    record_id=None if record_id is None else str(record_id),
                    action_index=action_index,
                    action_type=action_type,
                    key=key,
                    outcome=outcome,
                    detail=detail,
                )
            )

    def done_at(self, key: str) -> datetime | None:
        """When the action with this idempotency key was carried out, if it was."""
        query = (
            select(history.c.at).where(history.c.key == key, history.c.outcome == "done").limit(1)
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    def history(self, limit: int = 1000) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as conn:
            for row in conn.execute(select(history).order_by(history.c.id.desc()).limit(limit)):
                item = dict(row._mapping)
                item["at"] = datetime.fromtimestamp(item["at"], UTC)
                yield item

    def count(self, table: Table, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- cooldowns --------------------------------------------------------------------
    def last_fired(self, workflow: str, entity: str, record_id: Any) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(cooldowns.c.fired_at).where(
                    cooldowns.c.workflow == workflow,
                    cooldowns.c.entity == entity,
                    cooldowns.c.record_id == str(record_id),
                )
            ).scalar()
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    def fired(self, workflow: str, entity: str, record_id: Any, at: datetime) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(
                update(cooldowns)
                .where(
                    cooldowns.c.workflow == workflow,
                    cooldowns.c.entity == entity,
                    cooldowns.c.record_id == str(record_id),
                )
                .values(fired_at=_epoch(at))
            )
            if not found.rowcount:
                conn.execute(
                    insert(cooldowns).values(
                        workflow=workflow,
                        entity=entity,
                        record_id=str(record_id),
                        fired_at=_epoch(at),
                    )
                )

    def dispose(self) -> None:
        self.engine.dispose()


class StoredCooldowns:
    """Cooldowns kept in the state database, so they hold across runs."""

    def __init__(self, state: State) -> None:
        self.state = state

    def last(self, rule: str, entity: str, record_id: Any) -> datetime | None:
        return self.state.last_fired(rule, entity, record_id)

    def fired(self, rule: str, entity: str, record_id: Any, at: datetime) -> None:
        self.state.fired(rule, entity, record_id, at)
