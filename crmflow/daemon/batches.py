"""A poll's changes handled in batches, a few state transactions per batch, crash-safe.

Each batch takes two steps:

1. In one transaction, its changes are marked as in hand (crmflow_inflight, each with
   its version and the chain crmflow's own write gave it), before any action runs.
2. In a unit of work (state/units.py): everything the changes decide (history,
   cooldowns, pending rows, crmflow's own writes), then their snapshots and the removal
   of their marks. The unit may be committed part-way (before an action waits on
   another host, or when the batch runs long), never out of this order. The CRM writes
   the changes' actions make go into one CRM transaction (`CRM.batch`), committed
   before each commit of the unit: a record of a write is never durable before the
   write itself.

So whenever the daemon is killed, each change is either fully recorded (mark gone,
snapshot saved) or still marked: the next poll finds the mark and handles the change
again as stored, with its version and therefore its idempotency keys. Actions recorded
as done are skipped; CRM writes already applied are recognised by crmflow_applied
(those of the killed batch's open CRM transaction were rolled back with it); a
webhook or e-mail whose record was lost goes again under the same key.

A batch of changes no daemon began before goes the quick way: the done actions of its
records are read in one query (not one per action), and its CRM writes take a
statement each (`CRM.batch(new_keys=True)`: no savepoint, no look-up of the key, the
keys inserted together before the commit). Should one of its keys turn out applied
before, or one of its writes fail, the CRM rolls the batch's writes back (RedoBatch)
and step 2 is done again the careful way, as for a change a stopped daemon began: the
order of the commits, and so what a kill leaves, is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmflow.crm.database import RedoBatch
from crmflow.daemon.capture import Capture, Change
from crmflow.daemon.log import Log
from crmflow.daemon.sweep import describe_late
from crmflow.state.store import State

# Changes per batch: the state's commits shrink with it, the work redone after a kill grows.
# 500 rather than 200: a burst of 10,000 on SQLite ~8% sooner (fewer syncs of the CRM's
# file); BATCH_SECONDS still bounds how long a batch holds its transactions open.
BATCH_CHANGES = 500
# A batch's open unit (and its CRM transaction) is committed after this long: a SQLite
# state keeps other writers (the heartbeat thread, `crmflow pause`) waiting while a
# transaction is open, and a SQLite CRM keeps the CRM application's writers waiting.
BATCH_SECONDS = 0.5


@dataclass
class Batches:
    state: State
    capture: Capture
    log: Log
    # Evaluates one change and carries out or stores its actions (Daemon.handle).
    handle: Callable[[Change, datetime], Any]
    size: int = BATCH_CHANGES

    def take(self, entity: str, changes: list[Change], now: datetime) -> tuple[int, bool]:
        """Handle `changes` of `entity` in order: (how many, whether one begun by a
        stopped daemon was finished instead of the row's newer version, so the
        watermark must stay and the row be read again)."""
        if not changes:
            return 0, False
        unfinished = self.state.unfinished(entity, [str(c.record_id) for c in changes])
        recovered = False
        # Batches of new changes go the quick way (CRM.batch(new_keys=True)) until one has
        # to be made again: the rest of this poll's go the careful way.
        quick = True
        for part in self._split(changes):
            batch, moved_on = self._resume(part, unfinished)
            recovered = recovered or moved_on
            quick = self._run(entity, batch, now, quick=quick)
        return len(changes), recovered

    def _split(self, changes: list[Change]) -> list[list[Change]]:
        """Batches of up to `size` changes, none holding two of one record (the changelog
        of `change_capture: triggers` may give a record's insert and its delete)."""
        parts: list[list[Change]] = [[]]
        ids: set[str] = set()
        for change in changes:
            rid = str(change.record_id)
            if len(parts[-1]) >= self.size or rid in ids:
                parts.append([])
                ids.clear()
            parts[-1].append(change)
            ids.add(rid)
        return parts

    def _resume(
        self, changes: list[Change], unfinished: dict[str, dict[str, Any]]
    ) -> tuple[list[tuple[Change, bool]], bool]:
        """Each change paired with whether it is new; a change a stopped daemon began
        is taken as it was stored (its version, its chain)."""
        batch: list[tuple[Change, bool]] = []
        moved_on = False
        for change in changes:
            # Taken once: a later change of the same record in this poll is a new one.
            begun = unfinished.pop(str(change.record_id), None)
            if begun is None:
                batch.append((change, True))
                continue
            stored = Change.from_stored(begun)
            if stored.version != change.version:
                # The row has moved on since (perhaps by that daemon's own writes):
                # finish the change as it was; the rest shows up in the next poll.
                moved_on = True
                self.log.note(
                    f"finishing {stored.entity} {stored.record_id} {stored.kind}, begun by "
                    "a daemon that stopped"
                )
            batch.append((stored, False))
        return batch, moved_on

    def _run(
        self, entity: str, batch: list[tuple[Change, bool]], now: datetime, *, quick: bool
    ) -> bool:
        """One batch, both steps; whether the next may go the quick way."""
        fresh = [change for change, new in batch if new]
        with self.state.unit():
            chains = self.state.take_writes(entity, [str(c.record_id) for c in fresh])
            for change in fresh:
                change.chain = chains.get(str(change.record_id))
                if change.late:
                    line = describe_late(change, now)
                    self.log.late(line)
                    self.state.record(
                        "found_late", entity=entity, record_id=change.record_id, detail=line
                    )
            self.state.begin_changes(entity, [(str(c.record_id), c.to_stored()) for c in fresh])
        changes = [change for change, _ in batch]
        fresh_ids = [str(c.record_id) for c in fresh]
        if not quick or len(fresh) < len(batch):
            # A change begun by a stopped daemon may have had its writes made already.
            self._handle(entity, changes, fresh_ids, now, new_keys=False)
            return quick
        try:
            # No daemon began these changes, and the state records none of their actions
            # as done: their keys are new, but for the rare record back at a version
            # handled before whose history was pruned, which the CRM finds before its
            # commit. Their writes are expected to succeed.
            self._handle(entity, changes, fresh_ids, now, new_keys=True)
            return True
        except RedoBatch as exc:
            # Everything since the unit's last commit was rolled back, both databases;
            # the changes are still marked: made again, each write in a savepoint of its
            # own and each key looked up.
            self.log.note(f"{entity}: handling {len(changes)} changes again: {exc}")
            self._handle(entity, changes, fresh_ids, now, new_keys=False)
            return False

    def _handle(
        self,
        entity: str,
        changes: list[Change],
        fresh_ids: list[str],
        now: datetime,
        *,
        new_keys: bool,
    ) -> None:
        """Step 2 of a batch: its changes handled, their snapshots saved, marks removed."""
        crm = self.capture.crm
        # The CRM batch ends (commits) before the unit does, and every checkpoint of the
        # unit commits it first.
        with self.state.unit(), crm.batch(new_keys=new_keys):
            self.state.commit_first(crm.commit_batch)
            # The done actions of new changes' records in one query, not one per action;
            # one begun by a stopped daemon asks for each as before.
            self.state.know_done(entity, fresh_ids)
            since = time.monotonic()
            for change in changes:
                with self.state.handling(entity, change.record_id):
                    self.handle(change, now)
                if time.monotonic() - since > BATCH_SECONDS:
                    self.state.checkpoint()
                    since = time.monotonic()
            self.capture.commit_all(changes)
            self.state.end_changes(entity, [str(c.record_id) for c in changes])
