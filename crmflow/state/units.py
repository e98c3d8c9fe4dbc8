"""Units of work: many state writes of one thread in one transaction.

Outside a unit every store method is its own transaction, as a shell command or a test
wants. The daemon opens a unit around a batch of changes, so their history rows,
snapshots, pending rows and handled marks cost one commit instead of several each. A
unit may be committed part-way (`checkpoint`): what it holds so far is durable, and the
daemon's crash guarantees do not depend on where a unit ends (see daemon/batches.py).

A unit may have to wait for another transaction to commit first (`commit_first`): the
daemon's batch of CRM writes, which must be durable before the records saying they
were made (otherwise a kill could keep a "done" whose write was lost).

History and chain rows are the bulk of a batch's writes; inside a unit they are queued
and inserted together (one statement for many rows) before anything reads those tables
and when the unit commits.

Whether an action was done (`done_action`, asked before each action) is the bulk of its
reads: a unit can read the done actions of a batch's records at once (`know_done`) and
then answer, while one of those records is handled (`handling`), from what it read and
what it recorded since, without a query each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.engine import Engine


@dataclass
class _Unit:
    conn: Connection
    # Rows to insert, by table, in the order they were recorded.
    queued: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)
    # History rows with outcome "done", by key: those the unit recorded (`done_action`
    # must see an action recorded earlier in the same unit, flushed or not) and those
    # read by `know_done`, the earliest of a key first.
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The records (entity, id) whose done actions were all read into `done`, and the one
    # being handled: while it is one of them, `done` alone answers.
    known: set[tuple[str, str]] = field(default_factory=set)
    current: tuple[str, str] | None = None
    # Called before each commit, in order; one that raises keeps the unit uncommitted.
    before_commit: list[Callable[[], None]] = field(default_factory=list)

    def commit_others(self) -> None:
        for first in self.before_commit:
            first()


class Units:
    """The per-thread unit of work every store shares (State mixes it in)."""

    engine: Engine

    def _units(self) -> threading.local:
        local = self.__dict__.get("_unit_local")
        if local is None:
            local = self.__dict__.setdefault("_unit_local", threading.local())
        return local

    def _open_unit(self) -> _Unit | None:
        unit: _Unit | None = getattr(self._units(), "unit", None)
        return unit

    @contextmanager
    def unit(self) -> Iterator[None]:
        """This thread's state writes in one transaction, committed when the block ends
        (rolled back if it raises). A unit opened inside another joins it."""
        if self._open_unit() is not None:
            yield
            return
        conn = self.engine.connect()
        unit = _Unit(conn)
        self._units().unit = unit
        try:
            conn.begin()
            yield
            unit.commit_others()
            self._flush(unit)
            conn.commit()
        finally:
            self._units().unit = None
            # A connection closed inside a transaction rolls it back.
            conn.close()

    def checkpoint(self) -> None:
        """Commit what the open unit holds so far and go on in a new transaction (nothing
        without a unit). Called before the daemon waits on another host, so that a
        SQLite state is not kept locked meanwhile."""
        unit = self._open_unit()
        if unit is None:
            return
        unit.commit_others()
        self._flush(unit)
        unit.conn.commit()
        unit.conn.begin()

    def commit_first(self, commit: Callable[[], None]) -> None:
        """Have the open unit call `commit` before each of its commits (a checkpoint,
        its end). Without a unit there is nothing to wait for."""
        unit = self._open_unit()
        if unit is not None:
            unit.before_commit.append(commit)

    def _queue(self, table: Table, row: dict[str, Any]) -> bool:
        """Queue an insert into the open unit; False without one (insert it now)."""
        unit = self._open_unit()
        if unit is None:
            return False
        unit.queued.setdefault(table, []).append(row)
        if row.get("outcome") == "done" and row.get("key"):
            unit.done.setdefault(row["key"], row)
        return True

    def _flush(self, unit: _Unit) -> None:
        # Table by table, each dropped from the queue once inserted: a flush cut off by a
        # fault and tried again inserts no row twice. `done` is kept: what the unit
        # recorded stays true in its transaction, and `know_done` answers rely on it.
        while unit.queued:
            table = next(iter(unit.queued))
            unit.conn.execute(insert(table), unit.queued[table])
            del unit.queued[table]

    @contextmanager
    def handling(self, entity: str, record_id: Any) -> Iterator[None]:
        """The open unit's thread is handling a change of this record: every action whose
        `done_action` is asked meanwhile is one of this record's (the daemon's batches).
        Nothing without a unit."""
        unit = self._open_unit()
        if unit is None:
            yield
            return
        unit.current = (entity, str(record_id))
        try:
            yield
        finally:
            unit.current = None

    def _begin(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction: the unit's, or a new one committed on exit."""
        unit = self._open_unit()
        if unit is None:
            return self.engine.begin()
        self._flush(unit)
        return nullcontext(unit.conn)

    def _connect(self, *, flush: bool = True) -> AbstractContextManager[Connection]:
        """A connection to read with: the unit's (it sees the unit's writes), or a new one.

        `flush=False` for a reader that looks at the queued rows itself."""
        unit = self._open_unit()
        if unit is None:
            return self.engine.connect()
        if flush:
            self._flush(unit)
        return nullcontext(unit.conn)

    def _queued_done(self, key: str) -> tuple[dict[str, Any] | None, bool]:
        """A "done" history row of `key` the open unit recorded or read, if there is one;
        and whether that answer is complete (the record being handled had its done
        actions read by `know_done`), so that no query need follow."""
        unit = self._open_unit()
        if unit is None:
            return None, False
        row = unit.done.get(key)
        return row, row is not None or (unit.current is not None and unit.current in unit.known)
