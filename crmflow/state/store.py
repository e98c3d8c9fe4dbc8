"""State, crmflow's own state database: one class composed of the per-table stores.

Each concern keeps its queries in its own module (pending.py, history.py, changes.py,
cluster.py; the tables and migrations in tables.py); State puts them together over one
engine, so the engine and the daemon hold one object. The names callers import from here
are re-exported.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from crmflow.state.changes import ChangeStore
from crmflow.state.cluster import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    GONE_RETENTION,
    PAUSED,
    ClusterStore,
    daemon_rows,
    gone_since,
)
from crmflow.state.digests import DigestStore
from crmflow.state.history import HistoryStore, StoredCooldowns
from crmflow.state.pending import PendingAction, PendingStatus, PendingStore
from crmflow.state.tables import (
    MIGRATIONS,
    SCHEMA_VERSION,
    cooldowns,
    daemons,
    history,
    inflight,
    meta,
    metadata,
    open_engine,
    pending,
    schema_version,
    snapshots,
    watermarks,
    writes,
)
from crmflow.timeutil import Clock, system_clock

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "GONE_RETENTION",
    "MIGRATIONS",
    "PAUSED",
    "SCHEMA_VERSION",
    "PendingAction",
    "PendingStatus",
    "State",
    "StoredCooldowns",
    "cooldowns",
    "daemon_rows",
    "daemons",
    "gone_since",
    "history",
    "inflight",
    "meta",
    "metadata",
    "pending",
    "snapshots",
    "watermarks",
    "writes",
]


class State(PendingStore, HistoryStore, ChangeStore, ClusterStore, DigestStore):
    """One state database (SQLite by default, PostgreSQL in production)."""

    def __init__(
        self, url: str, *, clock: Clock = system_clock, engine: Engine | None = None
    ) -> None:
        self.clock = clock
        self.engine = open_engine(url, engine)

    @property
    def version(self) -> int:
        with self.engine.connect() as conn:
            return schema_version(conn)

    def dispose(self) -> None:
        self.engine.dispose()
