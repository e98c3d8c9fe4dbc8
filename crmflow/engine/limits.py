"""Outbound rate limits: webhooks per host and e-mails per minute.

A sliding window of the last minute's sends per key; when it is full, the action is
not refused but moved to when a slot frees up. Daemons that share a PostgreSQL state
share the window too (`SharedWindows`, a table in the state database, one key at a time
under an advisory lock): three daemons send no more than one would. Alone, a daemon
keeps it in memory.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import (
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine

SENDS = Table(
    "crmflow_sends",
    MetaData(),
    Column("key", String(300), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_crmflow_sends_key_at", "key", "at"),
)


class Windows(Protocol):
    def take(self, key: str, limit: int, moment: float) -> float: ...


class LocalWindows:
    """The last minute's sends per key, in this process."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def take(self, key: str, limit: int, moment: float) -> float:
        window = self._sent.setdefault(key, deque())
        while window and window[0] <= moment - 60:
            window.popleft()
        if len(window) >= limit:
            return window[0] + 60 - moment
        window.append(moment)
        return 0.0


class SharedWindows:
    """The last minute's sends per key, in the state database every daemon shares."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock("sends")})
                SENDS.create(conn, checkfirst=True)
            self._ready = True

    def take(self, key: str, limit: int, moment: float) -> float:
        self._prepare()
        with self.engine.begin() as conn:
            # One daemon at a time per key: counting and taking a slot are one step.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock(key)})
            conn.execute(delete(SENDS).where(SENDS.c.key == key, SENDS.c.at <= moment - 60))
            count, oldest = conn.execute(
                select(func.count(), func.min(SENDS.c.at)).where(SENDS.c.key == key)
            ).one()
            if count >= limit:
                return float(oldest) + 60 - moment
            conn.execute(insert(SENDS).values(key=key, at=moment))
        return 0.0


def _lock(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"crmflow:{key}".encode()).digest()[:8], "big") >> 1


class RateLimits:
    def __init__(
        self,
        *,
        webhook_per_host: int | None = None,
        email_per_minute: int | None = None,
        shared: Engine | None = None,
    ) -> None:
        self.webhook_per_host = webhook_per_host
        self.email_per_minute = email_per_minute
        # A PostgreSQL state that several daemons may share: the windows live there.
        self.windows: Windows = (
            SharedWindows(shared)
            if shared is not None and shared.dialect.name == "postgresql"
            else LocalWindows()
        )

    def _key(self, action_type: str, params: Any) -> tuple[str, int] | None:
        if action_type == "webhook" and self.webhook_per_host and isinstance(params, dict):
            host = urlsplit(str(params.get("url", ""))).hostname or "?"
            return f"webhook:{host}", int(self.webhook_per_host)
        if action_type in ("email", "notify") and self.email_per_minute:
            if action_type == "notify" and isinstance(params, dict):
                via = params.get("via") or ["inbox"]
                if "email" not in (via if isinstance(via, list) else [via]):
                    return None
            return "email", int(self.email_per_minute)
        return None

    def wait(self, action_type: str, params: Any, now: datetime) -> float:
        """Seconds until this action may go out (0: now); a send is counted when it is 0."""
        found = self._key(action_type, params)
        if found is None:
            return 0.0
        key, limit = found
        return self.windows.take(key, limit, now.timestamp())
