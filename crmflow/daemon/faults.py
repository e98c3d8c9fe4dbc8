"""Faults are not exits: a database that is locked, unreachable or replaced, a full disk.

The daemon keeps running through them. Each fault is one log line when it begins (and
one when it changes), one when it clears; meanwhile the loop tries again with backoff.
Nothing is lost: a tick cut off by a fault leaves its changes unacknowledged (the
watermark does not move and the snapshot still holds the old versions), so the next
tick that gets through reads them again.

Which database failed is known from SQLAlchemy's `handle_error` hook on each engine, so
a line says "CRM database" or "state database", not a statement dump.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from crmflow.daemon.log import Log

_DATABASE = "_crmflow_database"
# Backoff between tries while a fault lasts: short at first, then every 30 s.
FIRST_DELAY = 1.0
MAX_DELAY = 30.0


def label(engine: Engine, name: str) -> None:
    """Mark errors raised through `engine` as coming from the database called `name`."""

    def tag(context: object) -> None:
        for exc in (
            getattr(context, "sqlalchemy_exception", None),
            getattr(context, "original_exception", None),
        ):
            if exc is not None:
                # An exception type without a __dict__ simply stays unlabelled.
                with contextlib.suppress(AttributeError):
                    setattr(exc, _DATABASE, name)

    event.listen(engine, "handle_error", tag)


class Gone(Exception):
    """The CRM database file is not there (deleted, or being restored)."""


def is_fault(exc: BaseException) -> bool:
    """Whether `exc` is the world failing (retry later) rather than a bug or a mistake."""
    if isinstance(exc, (DBAPIError, PoolTimeout, sqlite3.OperationalError, Gone)):
        # Integrity errors are the data's fault, programming errors ours: not faults.
        return not isinstance(getattr(exc, "orig", exc), sqlite3.IntegrityError)
    if isinstance(exc, OSError):
        return True  # a full disk, a lost mount, a network down
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_fault(cause)


def describe(exc: BaseException) -> str:
    """One line: which database (when known) and what its driver said."""
    where = _where(exc)
    if isinstance(exc, Gone):
        return str(exc)
    # What the driver said, not the statement or a wrapper's paraphrase of it.
    exc = _root(exc)
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        text = str(orig) if orig is not None else str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    line = " ".join(text.split())  # drivers write several lines; one is enough here
    if len(line) > 200:
        line = line[:197] + "..."
    return f"{where}: {line}" if where else line


def _root(exc: BaseException) -> BaseException:
    """The database error behind `exc`, if one is in its chain; else `exc`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SQLAlchemyError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _where(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        name = getattr(seen, _DATABASE, None)
        if name is None and isinstance(seen, DBAPIError):
            name = getattr(seen.orig, _DATABASE, None)
        if name:
            return f"{name} database unavailable"
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class Faults:
    """The fault the loop is in, if any, and how long to wait before the next try."""

    log: Log
    current: str | None = None
    since: float = 0.0
    delay: float = FIRST_DELAY
    count: int = field(default=0)

    def failed(self, exc: BaseException) -> float:
        """Note a fault; returns the seconds to wait before trying again."""
        text = describe(exc)
        if self.current is None:
            self.since = time.monotonic()
            self.delay = FIRST_DELAY
            self.count += 1
            self.log.fault(f"{text}; retrying with backoff, nothing is lost")
        else:
            # The same fault going on, whatever it says this time (a server that went
            # away is first "closed the connection", then "connection refused"): one
            # line per fault, the next when it has cleared.
            self.delay = min(self.delay * 2, MAX_DELAY)
        self.current = text
        return self.delay

    def cleared(self) -> None:
        if self.current is None:
            return
        took = time.monotonic() - self.since
        self.log.note(f"recovered after {took:.0f}s: {self.current.split(':')[0]}")
        self.current = None
        self.delay = FIRST_DELAY
