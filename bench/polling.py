"""An idle poll (no changes) on a table of 1,000 and of 1,000,000 rows.

Change capture reads `updated_at >= watermark - overlap` through the column's index, so
the cost of a poll that finds nothing should not grow with the table.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from crmflow.crm.database import CRM, iso_utc
from crmflow.crm.demo import schema
from crmflow.daemon.capture import Capture
from crmflow.rules.entities import builtin_model
from crmflow.state.store import State

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _crm_with(rows: int, folder: Path) -> Path:
    path = folder / f"crm-{rows}.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata = schema(builtin_model())
    metadata.create_all(engine)
    deals = metadata.tables["deals"]
    start = NOW - timedelta(days=365)
    step = timedelta(days=364) / rows
    with engine.begin() as conn:
        batch = []
        for i in range(rows):
            batch.append(
                {
                    "id": i + 1,
                    "name": f"deal {i}",
                    "amount": i % 5000,
                    "stage": "proposal",
                    "updated_at": iso_utc(start + step * i),
                }
            )
            if len(batch) == 20000:
                conn.execute(insert(deals), batch)
                batch = []
        if batch:
            conn.execute(insert(deals), batch)
    engine.dispose()
    return path


def _poller(rows: int, folder: Path) -> tuple[Capture, list[Any]]:
    crm = CRM(f"sqlite:///{_crm_with(rows, folder)}", builtin_model())
    state = State(f"sqlite:///{folder / f'state-{rows}.db'}")
    capture = Capture(crm, state, ["deal"], clock=lambda: NOW)
    # Idle: the newest row is a day old, so the window (overlap, and the text-offset band
    # below it) holds no row in either table. (The watermark is the database's clock at
    # the last poll; this one's lags the real clock, which only makes it the older bound.)
    state.set_watermark("deal", iso_utc(NOW), scanned_at=NOW.timestamp())
    # The rows within the window are known from then on, as after their first poll.
    for change in capture.poll("deal"):
        capture.commit(change)
    return capture, [crm, state]


def measure(polls: int = 300) -> dict[str, Any]:
    """Median idle-poll times; the two tables are polled in turns, so both see the same
    machine (a run of one after the other measured the machine's drift as well)."""
    with tempfile.TemporaryDirectory() as folder:
        small, small_parts = _poller(1_000, Path(folder))
        large, large_parts = _poller(1_000_000, Path(folder))
        times: dict[int, list[float]] = {0: [], 1: []}
        for _ in range(polls):
            for slot, capture in enumerate((small, large)):
                started = time.perf_counter()
                assert capture.poll("deal") == []
                times[slot].append(time.perf_counter() - started)
        for part in small_parts + large_parts:
            part.dispose()
    small_ms = statistics.median(times[0]) * 1000
    large_ms = statistics.median(times[1]) * 1000
    return {
        "rows_small": 1_000,
        "rows_large": 1_000_000,
        "polls": polls,
        "small_ms": round(small_ms, 3),
        "large_ms": round(large_ms, 3),
        "ratio": round(large_ms / small_ms, 2),
    }


if __name__ == "__main__":
    print(measure())


def measure_sweep(rows: int = 1_000_000) -> dict[str, Any]:
    """The reconciliation sweep over a table of `rows`: rows compared per second.

    A baseline snapshots every row first (as a daemon's first start does); the sweep
    then reads the table page by page and compares each row's version with it. One row
    is changed behind the window's back, and must be the one change found.
    """
    from crmflow.daemon.sweep import Sweep

    with tempfile.TemporaryDirectory() as folder:
        path = _crm_with(rows, Path(folder))
        crm = CRM(f"sqlite:///{path}", builtin_model())
        state = State(f"sqlite:///{Path(folder) / 'state.db'}")
        capture = Capture(crm, state, ["deal"], clock=lambda: NOW)
        started = time.perf_counter()
        capture.ensure_baselines()
        baseline_s = time.perf_counter() - started
        engine = create_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE deals SET name = 'changed late', updated_at = ? WHERE id = ?",
                (iso_utc(NOW - timedelta(days=30)), rows // 2),
            )
        engine.dispose()
        sweep = Sweep(capture, timedelta(0), budget=3600)
        sweep.step("deal", NOW)  # the first step only notes that a baseline was taken
        started = time.perf_counter()
        found = sweep.step("deal", NOW)
        sweep_s = time.perf_counter() - started
        crm.dispose()
        state.dispose()
    assert [c.record_id for c in found] == [rows // 2], found
    return {
        "rows": rows,
        "baseline_s": round(baseline_s, 1),
        "sweep_s": round(sweep_s, 1),
        "sweep_rows_per_s": round(rows / sweep_s),
    }
