"""Which failures of the CRM database pass (locked, unreachable) and which never will.

A write that meets a lock or a dropped connection is rolled back and may succeed later:
it raises CrmUnavailable, which the engine retries with backoff. Constraint violations,
unknown tables or columns and bad values stay permanent failures.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from crmflow.errors import ActionError


def short(exc: Exception) -> str:
    """The driver's own first line (not SQLAlchemy's statement dump), at most 300 characters."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class CrmUnavailable(ActionError):
    """The CRM could not take a write for now (locked, unreachable): it may pass.

    The engine retries it with backoff, as its own Transient (which this layer cannot
    import); anyone else still sees an ActionError with a one-line message.
    """


# PostgreSQL SQLSTATEs of failures that pass: the whole class 08 (connection exceptions),
# serialization failure, deadlock, lock_timeout, too many connections, and a server
# shutting down, restarting or not yet accepting connections (57P01-57P03).
_TEMPORARY_SQLSTATES = frozenset({"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"})
# SQLite's primary result codes: SQLITE_BUSY (another connection holds the lock past the
# busy timeout) and SQLITE_LOCKED (a table locked within the same database).
_SQLITE_BUSY_OR_LOCKED = frozenset({5, 6})
# What drivers without codes (or a connection that failed before any) say.
_TEMPORARY_WORDS = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "connection refused",
    "could not connect",
    "connection failed",
    "server closed the connection",
    "terminating connection",
    "connection timed out",
    "could not serialize access",
    "deadlock detected",
)


def temporary(exc: SQLAlchemyError) -> bool:
    """Whether a failed write may succeed later. Constraint violations, unknown tables or
    columns and bad values never will: those stay permanent failures."""
    if isinstance(exc, PoolTimeout):
        return True  # every pooled connection busy
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # SQLAlchemy saw the connection drop (a server restart, a network cut)
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("08") or sqlstate in _TEMPORARY_SQLSTATES
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _SQLITE_BUSY_OR_LOCKED  # an extended code keeps it in its low byte
    text = str(orig).lower()
    return any(words in text for words in _TEMPORARY_WORDS)


def write_failed(exc: SQLAlchemyError) -> ActionError:
    """A failed write as the error to raise: CrmUnavailable when trying later may help."""
    if temporary(exc):
        return CrmUnavailable(f"CRM unavailable, write rolled back: {short(exc)}")
    return ActionError(f"CRM write failed: {short(exc)}")
