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


def test_an_effect_is_recorded_once_the_state_database_answers_again(tmp_path: Path) -> None:
    """The effect already happened: its record waits for a locked state database instead
    of giving up (a tick given up would make the effect happen a second time)."""
    from crmflow.config import Config
    from crmflow.engine.effects.base import Services
    from crmflow.engine.execute import Executor
    from crmflow.state.store import State

    path = tmp_path / "state.db"
    url = f"sqlite:///{path}"
    state = State(url, engine=create_engine(url, connect_args={"timeout": 0.05}))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the lock goes after the second pause
            holder.execute("ROLLBACK")

    executor = Executor(Services(Config(), sleep=sleep), state)
    faults: list[str] = []
    recovered: list[bool] = []
    executor.on_fault = lambda exc: faults.append(describe(exc)) or 0.5
    executor.on_recovered = lambda: recovered.append(True)
    executor._durably(lambda: state.record("done", workflow="w", detail="sent"))
    assert pauses == [0.5, 0.5] and recovered == [True]
    assert all("database is locked" in fault for fault in faults) and len(faults) == 2
    assert [(h["outcome"], h["detail"]) for h in state.history()] == [("done", "sent")]
    holder.close()
    state.dispose()
