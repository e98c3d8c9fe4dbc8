"""The state database's tables and schema version, and opening it: migrations, SQLite pragmas.

Every table of crmflow's own database is declared here, so the schema can be read in one
place; the stores in pending.py, history.py, changes.py and cluster.py each query theirs.
The schema is versioned in `crmflow_meta` and migrated on open.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crmflow.drivers import engine_for
from crmflow.errors import ConfigError
from crmflow.state.units import Units
from crmflow.timeutil import Clock

SCHEMA_VERSION = 5
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
    Column("status", String(20), nullable=False),  # a pending.PendingStatus value
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
    # v4: JSON output of an action (a created record's id, a generated code), kept with its
    # done record: an action skipped as done after a restart hands later steps the same
    # `steps.<id>` as the first run did. Older rows have none.
    Column("output", Text),
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
# v5: what a digest (`digest:` on notify/email) has collected for one recipient and one
# sending; the sending itself is a pending row (action_type "digest") keyed by `bucket`.
digest_items = Table(
    "crmflow_digest_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bucket", String(80), nullable=False),  # the digest row's key
    Column("key", String(80), nullable=False),  # the collected action's key: once each
    Column("workflow", String(200), nullable=False),
    Column("entity", String(80), nullable=False),
    Column("record_id", String(80)),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("at", Float, nullable=False),
    UniqueConstraint("bucket", "key", name="uq_crmflow_digest_items_bucket_key"),
)


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
    4: [("crmflow_history", "output", "TEXT")],
    5: [],  # crmflow_digest_items: a new table, made by create_all
}


MIGRATION_LOCK = int.from_bytes(b"crmflow:m", "big") % (2**63)


class Tables(Units):
    """What every store shares: the open database, the clock that stamps its rows, and
    the unit of work its writes may join (units.py)."""

    engine: Engine
    clock: Clock

    def _insert_new(self, table: Table, row: dict[str, Any], returning: Column[Any]) -> Any:
        """Insert `row` unless a unique key of it is taken: `returning`'s value, or None
        when the row was there already.

        A key stored before is no error: inside a unit of work a failed insert would end
        PostgreSQL's transaction, and with it the unit's other writes.
        """
        with self._begin() as conn:
            if conn.dialect.name in ("sqlite", "postgresql"):
                upsert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
                query = upsert(table).values(row).on_conflict_do_nothing()
                return conn.execute(query.returning(returning)).scalar()
        try:
            with self._begin() as conn:
                result = conn.execute(insert(table).values(row))
                return result.inserted_primary_key[0]
        except IntegrityError:
            return None


def epoch(moment: datetime) -> float:
    """An aware datetime as the epoch seconds (UTC) the tables store."""
    return moment.astimezone(UTC).timestamp()


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


def open_engine(url: str, engine: Engine | None = None) -> Engine:
    """The state database at `url` (or the `engine` given), its schema brought up to date."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        folder = Path(url[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"state: cannot create the folder {folder}: {exc.strerror or exc}"
            ) from None
    try:
        opened = engine or engine_for(url, "state")
        if engine is None and opened.dialect.name == "sqlite":
            event.listen(opened, "connect", _sqlite_state_pragmas)
        migrate(opened)
    except SQLAlchemyError as exc:
        raise ConfigError(f"state: cannot open the state database: {exc}") from None
    return opened


def migrate(engine: Engine) -> None:
    """Create missing tables and add the columns of each schema version since the stored one."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
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


def schema_version(conn: Connection) -> int:
    """The schema version stored in the database."""
    return int(
        conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one()
    )
