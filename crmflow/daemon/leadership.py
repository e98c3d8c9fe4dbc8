"""Which daemon leads: polls the CRM and plans schedules. All of them carry out actions.

On PostgreSQL the leader holds a session-level advisory lock on its own connection; when
it dies, the server drops the lock and the next daemon to ask takes it (within a poll
interval or two). With SQLite there is only one daemon, and it leads.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

# 'crmflow' as a number: the advisory lock's key, the same for every daemon.
LOCK_KEY = int.from_bytes(b"crmflow", "big")


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    @property
    def leading(self) -> bool:
        return not self.shared or self._conn is not None

    def check(self) -> bool:
        """Still (or now) the leader? Cheap when nothing changed."""
        if not self.shared:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError:
                self._drop()
        try:
            conn = self.engine.connect()
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            ).scalar()
            conn.commit()
        except SQLAlchemyError:
            return False
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._conn.commit()
            except SQLAlchemyError:
                pass
        self._drop()
