"""Which errors are faults (retried) rather than bugs, and the one line each gets."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from crmflow.daemon.faults import Faults, describe, is_fault, label
from crmflow.daemon.log import Log
from crmflow.errors import ActionError


def locked_error(tmp_path: Path) -> OperationalError:
    """A real "database is locked" through a labelled engine, as the daemon meets it."""
    path = tmp_path / "crm.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    label(engine, "CRM")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM t"))
    except OperationalError as exc:
        return exc
    finally:
        holder.execute("ROLLBACK")
        engine.dispose()
    raise AssertionError("the lock did not hold")


def test_a_locked_database_is_one_line_naming_the_database(tmp_path: Path) -> None:
    exc = locked_error(tmp_path)
    assert is_fault(exc)
    assert describe(exc) == "CRM database unavailable: database is locked"


def test_a_wrapped_database_error_is_described_by_what_the_driver_said(tmp_path: Path) -> None:
    try:
        try:
            raise locked_error(tmp_path)
        except OperationalError:
            raise ActionError("deal: cannot read table 'deals': [SQL: PRAGMA ...]") from None
    except ActionError as wrapped:
        assert is_fault(wrapped)
        assert describe(wrapped) == "CRM database unavailable: database is locked"


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (OSError(28, "No space left on device"), True),
        (IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")), False),
        (KeyError("a bug"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_counts_as_a_fault(error: BaseException, fault: bool) -> None:
    assert is_fault(error) is fault


def test_one_line_per_fault_and_one_when_it_clears(tmp_path: Path) -> None:
    out = io.StringIO()
    faults = Faults(Log("plain", stream=out))
    exc = locked_error(tmp_path)
    delays = [faults.failed(exc) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    faults.cleared()
    faults.cleared()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert " fault " in lines[0] and "database is locked" in lines[0]
    assert "recovered after" in lines[1]
