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
from enum import StrEnum
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
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crmflow.errors import ConfigError
from crmflow.timeutil import Clock, system_clock

SCHEMA_VERSION = 3
# The flag that holds every action (`crmflow pause`) until `crmflow resume` clears it.
PAUSED = "paused"
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
    # v2: several daemons claim rows; a claim is a lease that runs out if its daemon dies.
    Column("owner", String(120)),
    Column("lease_until", Float),
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
# v2: the daemons sharing this state, and which one leads (polls and plans schedules).
daemons = Table(
    "crmflow_daemons",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("leader", Integer, nullable=False, default=0),
    # v3: seconds without a heartbeat after which this daemon counts as gone, chosen by
    # the daemon itself, so `crmflow status` (another process, without that daemon's
    # configuration) can tell a live daemon from a killed one.
    Column("heartbeat_timeout", Float),
)
# A row from before v3 has no timeout of its own; it gets this one.
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
# A gone daemon stays listed, as gone, for an hour after its heartbeat timed out, so a
# crash is still visible to whoever looks next; after that the leader's housekeeping
# deletes its row (State.prune_daemons), and `crmflow status` leaves it out even where no
# leader prunes (a SQLite daemon that died and was not restarted). A fixed period rather
# than a setting: the row only serves as a notice that the daemon went.
GONE_RETENTION = 3600.0
# The last values crmflow saw of each record: `previous` and changed fields come from here.
snapshots = Table(
    "crmflow_snapshots",
    metadata,
    Column("entity", String(80), primary_key=True),
    Column("record_id", String(80), primary_key=True),
    Column("version", String(40), nullable=False),
    Column("data", Text, nullable=False),
)
# A change being handled: written before its actions run, removed with its snapshot, so
# a daemon that dies in between leaves the change to be finished with the same version
# (the same keys), not re-read as something new.
inflight = Table(
    "crmflow_inflight",
    metadata,
    Column("entity", String(80), primary_key=True),
    Column("record_id", String(80), primary_key=True),
    Column("change", Text, nullable=False),  # JSON: kind, record, previous, version, at, ...
)
# How far change capture has read, per entity (an updated_at text or a changelog sequence).
watermarks = Table(
    "crmflow_watermarks",
    metadata,
    Column("entity", String(80), primary_key=True),
    Column("value", Text, nullable=False),
    Column("scanned_at", Float),  # last hard-delete scan
)
# Writes crmflow made itself, so the change they cause is known as crmflow's (chains).
writes = Table(
    "crmflow_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(80), nullable=False),
    Column("record_id", String(80), nullable=False),
    Column("key", String(80), nullable=False),
    Column("chain", Text, nullable=False),  # JSON list of [workflow, entity, record_id]
    Column("at", Float, nullable=False),
)
Index("ix_crmflow_writes_record", writes.c.entity, writes.c.record_id)


# Columns (table, column, SQL type) that bring a state database from the version before
# to this one. Tables that did not exist are made whole by create_all, so a column is
# added only where it is missing (a version 1 database gets crmflow_daemons, v3 columns
# and all, from create_all).
MIGRATIONS: dict[int, list[tuple[str, str, str]]] = {
    2: [
        ("crmflow_pending", "owner", "VARCHAR(120)"),
        ("crmflow_pending", "lease_until", "FLOAT"),
    ],
    3: [("crmflow_daemons", "heartbeat_timeout", "FLOAT")],
}


MIGRATION_LOCK = int.from_bytes(b"crmflow:m", "big") % (2**63)


def _epoch(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


def gone_since(row: dict[str, Any]) -> float:
    """When (epoch seconds) the daemon of a crmflow_daemons row counts as gone, unless it
    beats again first: its last heartbeat plus its own timeout."""
    timeout = row.get("heartbeat_timeout")
    return float(row["heartbeat_at"]) + (
        DEFAULT_HEARTBEAT_TIMEOUT if timeout is None else float(timeout)
    )


class PendingStatus(StrEnum):
    """Where a pending action stands (crmflow_pending.status; the values are stored)."""

    PENDING = "pending"  # to run at due_at (a wait: to time out then)
    WAITING = "waiting"  # behind a wait: pending again (or cancelled) when the wait ends
    RUNNING = "running"  # claimed by a daemon until its lease runs out
    DONE = "done"
    FAILED = "failed"  # retryable by hand (`crmflow pending retry`)
    CANCELLED = "cancelled"


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


def _sqlite_state_pragmas(dbapi_connection: Any, record: Any) -> None:
    """Write-ahead log, synced at checkpoints rather than at every commit.

    A change costs the state several small transactions; with the default rollback
    journal each one is a journal file written, synced and deleted (about 1.5 ms here).
    In WAL mode with synchronous=NORMAL a commit is an append: a killed daemon loses
    nothing (the log is in the page cache), a power cut may lose the last commits but
    never leaves the database inconsistent, and `crmflow status` reads while the
    daemon writes.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


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
            if engine is None and self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_state_pragmas)
            self._migrate()
        except SQLAlchemyError as exc:
            raise ConfigError(f"state: cannot open the state database: {exc}") from None

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Daemons starting together on a fresh database: one migrates at a time.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            metadata.create_all(conn)
            row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
            version = int(row[0]) if row is not None else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"state: the database has schema version {version}, newer than "
                    f"this crmflow ({SCHEMA_VERSION}); upgrade crmflow"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for table, column, kind in MIGRATIONS.get(step, []):
                    present = {c["name"] for c in inspect(conn).get_columns(table)}
                    if column not in present:
                        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
            conn.execute(meta.delete().where(meta.c.key == "schema_version"))
            conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))

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
            m["created_at"],
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

    # -- snapshots and watermarks (change capture) -----------------------------------
    def snapshots(self, entity: str, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """id -> (version, data) for those of `ids` crmflow has seen."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(snapshots.c.record_id, snapshots.c.version, snapshots.c.data).where(
                    snapshots.c.entity == entity, snapshots.c.record_id.in_(chunk)
                )
                for record_id, version, data in conn.execute(query):
                    found[record_id] = (version, json.loads(data))
        return found

    def snapshot_ids(self, entity: str) -> set[str]:
        with self.engine.connect() as conn:
            query = select(snapshots.c.record_id).where(snapshots.c.entity == entity)
            return {row[0] for row in conn.execute(query)}

    def save_snapshots(self, entity: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Upsert (id, version, data) rows, in one transaction."""
        if not rows:
            return
        with self.engine.begin() as conn:
            ids = [r[0] for r in rows]
            for start in range(0, len(ids), 500):
                conn.execute(
                    snapshots.delete().where(
                        snapshots.c.entity == entity,
                        snapshots.c.record_id.in_(ids[start : start + 500]),
                    )
                )
            conn.execute(
                insert(snapshots),
                [
                    {
                        "entity": entity,
                        "record_id": i,
                        "version": v,
                        "data": json.dumps(d, default=str),
                    }
                    for i, v, d in rows
                ],
            )

    def drop_snapshots(self, entity: str, ids: list[str]) -> None:
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    snapshots.delete().where(
                        snapshots.c.entity == entity,
                        snapshots.c.record_id.in_(ids[start : start + 500]),
                    )
                )

    def watermark(self, entity: str) -> tuple[str | None, float | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(watermarks.c.value, watermarks.c.scanned_at).where(
                    watermarks.c.entity == entity
                )
            ).first()
        return (row[0], row[1]) if row else (None, None)

    def set_watermark(
        self, entity: str, value: str | None = None, scanned_at: float | None = None
    ) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(watermarks.c.value).where(watermarks.c.entity == entity)
            ).first()
            values: dict[str, Any] = {}
            if value is not None:
                values["value"] = value
            if scanned_at is not None:
                values["scanned_at"] = scanned_at
            if row is None:
                conn.execute(
                    insert(watermarks).values(
                        entity=entity, value=value or "", scanned_at=scanned_at
                    )
                )
            elif values:
                conn.execute(
                    update(watermarks).where(watermarks.c.entity == entity).values(**values)
                )

    def begin_change(self, entity: str, record_id: Any, change: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                inflight.delete().where(
                    inflight.c.entity == entity, inflight.c.record_id == str(record_id)
                )
            )
            conn.execute(
                insert(inflight).values(
                    entity=entity, record_id=str(record_id), change=json.dumps(change, default=str)
                )
            )

    def end_change(self, entity: str, record_id: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                inflight.delete().where(
                    inflight.c.entity == entity, inflight.c.record_id == str(record_id)
                )
            )

    def unfinished(self, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Changes of these records that a daemon began and did not finish."""
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(inflight.c.record_id, inflight.c.change).where(
                    inflight.c.entity == entity, inflight.c.record_id.in_(ids[start : start + 500])
                )
                for record_id, change in conn.execute(query):
                    found[record_id] = json.loads(change)
        return found

    # -- crmflow's own writes (chains) ------------------------------------------------
    def note_write(self, entity: str, record_id: Any, key: str, chain: list[Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(writes).values(
                    entity=entity,
                    record_id=str(record_id),
                    key=key,
                    chain=json.dumps(chain),
                    at=_epoch(self.clock()),
                )
            )

    def take_write(self, entity: str, record_id: Any) -> list[Any] | None:
        """The chain of crmflow's oldest unclaimed write to this record (claiming it)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(writes.c.id, writes.c.chain)
                .where(writes.c.entity == entity, writes.c.record_id == str(record_id))
                .order_by(writes.c.id)
                .limit(1)
            ).first()
            if row is None:
                return None
            conn.execute(
                writes.delete().where(
                    writes.c.entity == entity, writes.c.record_id == str(record_id)
                )
            )
            return list(json.loads(row[1]))

    # -- control ----------------------------------------------------------------------
    def flag(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == name)).scalar()

    def set_flag(self, name: str, value: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(meta.delete().where(meta.c.key == name))
            if value is not None:
                conn.execute(insert(meta).values(key=name, value=value))

    def due(self, now: datetime, limit: int = 100) -> list[PendingAction]:
        query = (
            select(pending)
            .where(pending.c.status == "pending", pending.c.due_at <= _epoch(now))
            .order_by(pending.c.due_at, pending.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._pending(row) for row in conn.execute(query)]

    def next_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.min(pending.c.due_at)).where(pending.c.status == "pending")
            ).scalar()
        return datetime.fromtimestamp(value, UTC) if value is not None else None

    def get_pending(self, action_id: int) -> PendingAction | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(pending).where(pending.c.id == action_id)).first()
        return self._pending(row) if row is not None else None

    def find_pending(
        self,
        *,
        workflow: str | None = None,
        entity: str | None = None,
        record_id: Any = None,
        action_type: str | None = None,
        statuses: tuple[str, ...] = ("pending", "waiting"),
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
        with self.engine.connect() as conn:
            return [self._pending(row) for row in conn.execute(query.order_by(pending.c.id))]

    def update_pending(self, action_id: int, **values: Any) -> None:
        if "due_at" in values and isinstance(values["due_at"], datetime):
            values["due_at"] = _epoch(values["due_at"])
        if "context" in values and not isinstance(values["context"], str):
            values["context"] = json.dumps(values["context"], default=str)
        values["updated_at"] = _epoch(self.clock())
        with self.engine.begin() as conn:
            conn.execute(update(pending).where(pending.c.id == action_id).values(**values))

    def claim(self, action_id: int) -> bool:
        """Mark a due row running; False if someone else took it first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(pending)
                .where(pending.c.id == action_id, pending.c.status == "pending")
                .values(
                    status="running",
                    attempts=pending.c.attempts + 1,
                    updated_at=_epoch(self.clock()),
                )
            )
            return bool(result.rowcount)

    def claim_due(
        self, now: datetime, owner: str, lease: float, limit: int = 100
    ) -> list[PendingAction]:
        """Due rows (and rows whose claim ran out) claimed for `owner` for `lease` seconds.

        On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so daemons sharing
        the state never claim the same row; on SQLite there is one daemon.
        """
        moment = _epoch(now)
        with self.engine.begin() as conn:
            query = (
                select(pending.c.id)
                .where(
                    ((pending.c.status == "pending") & (pending.c.due_at <= moment))
                    | ((pending.c.status == "running") & (pending.c.lease_until < moment))
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
                    status="running",
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
            return [self._pending(row) for row in rows]

    # -- the daemons sharing this state ----------------------------------------------
    def heartbeat(
        self,
        daemon_id: str,
        host: str,
        pid: int,
        leader: bool | None,
        started: float,
        *,
        timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        took_lead: bool = False,
    ) -> None:
        """Mark the daemon alive now, registering it when it has no row (yet, or again).

        `leader` None leaves the flag as it is (a beat from a thread that does not know
        whether the lead is still held). `took_lead`: the daemon has just taken the lead,
        so another row's leader flag is stale (a leader that died, or lost its lock) and
        is cleared in the same transaction.
        """
        now = _epoch(self.clock())
        values: dict[str, Any] = {"heartbeat_at": now, "heartbeat_timeout": timeout}
        if leader is not None:
            values["leader"] = int(leader)
        with self.engine.begin() as conn:
            if took_lead:
                conn.execute(
                    update(daemons)
                    .where(daemons.c.id != daemon_id, daemons.c.leader != 0)
                    .values(leader=0)
                )
            done = conn.execute(update(daemons).where(daemons.c.id == daemon_id).values(**values))
            if not done.rowcount:
                row = {"id": daemon_id, "host": host, "pid": pid, "started_at": started}
                conn.execute(insert(daemons).values(**{"leader": 0, **row, **values}))

    def forget_daemon(self, daemon_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(daemons.delete().where(daemons.c.id == daemon_id))

    def daemons(self) -> list[dict[str, Any]]:
        """Every registered daemon's row, oldest first, gone ones included."""
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(daemons).order_by(daemons.c.started_at))
            ]

    def prune_daemons(self, now: datetime, retention: float = GONE_RETENTION) -> int:
        """Delete the rows of daemons gone (heartbeat timed out) for over `retention` s."""
        gone_at = daemons.c.heartbeat_at + func.coalesce(
            daemons.c.heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT
        )
        with self.engine.begin() as conn:
            result = conn.execute(daemons.delete().where(gone_at < _epoch(now) - retention))
            return int(result.rowcount or 0)

    def requeue_running(self) -> int:
        """Rows left running by a crash go back to pending (their effect may be repeated)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(pending).where(pending.c.status == "running").values(status="pending")
            )
            return int(result.rowcount or 0)

    def prune_history(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(history.delete().where(history.c.at < _epoch(before)))
            return int(result.rowcount or 0)

    def dispose(self) -> None:
        self.engine.dispose()


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


class StoredCooldowns:
    """Cooldowns kept in the state database, so they hold across runs."""

    def __init__(self, state: State) -> None:
        self.state = state

    def last(self, rule: str, entity: str, record_id: Any) -> datetime | None:
        return self.state.last_fired(rule, entity, record_id)

    def fired(self, rule: str, entity: str, record_id: Any, at: datetime) -> None:
        self.state.fired(rule, entity, record_id, at)
