"""The reconciliation sweep: now and then, every row compared with crmflow's snapshot.

A poll's window finds what is stamped within reach of the watermark. A row stamped
further back — an application server's clock hours off, an import that keeps old stamps,
a restored backup, a NULL `updated_at` — is outside every window. The sweep reads the
whole table by id, a few pages per tick within a time budget so polls stay prompt, and
hands back each row whose version differs from the snapshot: evaluated late, never lost.
Rows the current window still covers are left to it.

Progress is kept in the state database (per entity: where the sweep is, when it began),
so a restart goes on where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from crmflow.daemon.capture import Capture, Change
from crmflow.timeutil import format_utc, parse_instant


@dataclass
class Sweep:
    capture: Capture
    every: timedelta
    # Seconds of reading per entity per tick: a large table takes many ticks.
    budget: float = 0.2

    def _flag(self, entity: str) -> str:
        return f"sweep:{entity}"

    def _progress(self, entity: str) -> dict[str, Any] | None:
        value = self.capture.state.flag(self._flag(entity))
        return json.loads(value) if value else None

    def _save(self, entity: str, progress: dict[str, Any]) -> None:
        self.capture.state.set_flag(self._flag(entity), json.dumps(progress))

    def restart(self, entity: str, now: datetime) -> None:
        """Begin a sweep of `entity` at the next step (the CRM database was replaced)."""
        self._save(entity, {"after": None, "running": True, "began": format_utc(now)})

    def step(self, entity: str, now: datetime) -> list[Change]:
        """The changes the next pages of `entity` hold, if a sweep is due or under way."""
        progress = self._progress(entity)
        if progress is None:
            # The first sweep comes one interval after the baseline, which saw every row.
            self._save(entity, {"after": None, "running": False, "began": format_utc(now)})
            return []
        if not progress["running"]:
            if now < parse_instant(progress["began"]) + self.every:
                return []
            progress = {"after": None, "running": True, "began": format_utc(now)}
        capture = self.capture
        started = time.monotonic()
        found: list[Change] = []
        while True:
            records = capture.crm.page(
                entity, progress["after"], capture.batch, include_deleted=True
            )
            if records:
                progress["after"] = records[-1]["id"]
            found += self._late(entity, records)
            if len(records) < capture.batch:
                progress["running"] = False
                break
            if time.monotonic() - started > self.budget:
                break
        self._save(entity, progress)
        return found

    def _late(self, entity: str, records: list[dict[str, Any]]) -> list[Change]:
        window = self.capture.lower.get(entity)
        late = []
        for change in self.capture._compare(entity, records):
            if window is not None and change.at is not None and change.at >= window:
                continue  # the poll's window reads this row: it is not late
            late.append(replace(change, late=True))
        return late


def describe_late(change: Change, now: datetime) -> str:
    """The log line for a change the sweep found."""
    if change.at is None:
        stamp = "without a readable updated_at"
    else:
        behind = now - change.at
        stamp = f"stamped {format_utc(change.at)}"
        if behind > timedelta(0):
            stamp += f", {_span(behind)} before now"
    return (
        f"{change.entity} {change.record_id} {change.kind}: found late by the "
        f"reconciliation sweep ({stamp}); evaluated now"
    )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
