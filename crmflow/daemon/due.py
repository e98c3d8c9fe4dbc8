"""Due pending actions: each row claimed when its time comes and carried out.

The one path by which a delayed action fires or is cancelled, a wait times out and a
schedule occurrence runs, whether the daemon's loop calls it or `crmflow test` rehearses
a case (crmflow.daemon.rehearsal), so the two cannot disagree.

With workers (the daemon), a row whose action waits on another host is checked and
rendered here, on the daemon's thread, then tried and recorded by a worker
(daemon/workers.py) under the row's key, while the tick goes on. Rows are independent
of each other (a row's `steps` were stored with it), so their order does not matter;
a host's backlog beyond a few seconds of its work is given back to the table for a
moment rather than held in memory under a running lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from crmflow.daemon.log import Log
from crmflow.daemon.schedules import Schedules
from crmflow.daemon.waits import Waits
from crmflow.daemon.workers import QUEUED_SHARE, Task, Workers, destination
from crmflow.engine.digests import DIGEST
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event
from crmflow.engine.execute import IN_DATABASE, Executor, Ready, Settled
from crmflow.engine.modes import releasable
from crmflow.errors import CrmflowError
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow
from crmflow.state.store import PendingAction, PendingStatus, State

# Rows of a host whose queue is full (Workers.has_room) are given back, due again after
# this many seconds.
HOST_BUSY_PAUSE = 1.0


def finish(
    executor: Executor,
    log: Log,
    row: PendingAction,
    status: PendingStatus,
    reason: str | None,
    history: bool = False,
) -> None:
    """End a pending row; the log says so when the history does."""
    log_row(log, row, executor.finish(row, status, reason, history=history))


def log_row(log: Log, row: PendingAction, note: str | None) -> None:
    """What happened to a pending row, in the log (with its record and key)."""
    if note is not None:
        log.action(
            row.workflow,
            row.action_type,
            note,
            entity=row.entity,
            record=row.record_id,
            key=row.key,
        )


@dataclass
class DueActions:
    """Claims what is due and hands each row to the part that decides its fate."""

    state: State
    executor: Executor
    log: Log
    waits: Waits
    schedules: Schedules
    owner: str
    lease: float
    # None: every row is tried on the calling thread, in turn (`crmflow test`).
    workers: Workers | None = None
    # Rows of busy hosts claimed in this round, given back to the table together.
    _busy: list[int] = field(default_factory=list, init=False, repr=False)

    def run(
        self,
        now: datetime,
        rules: RuleSet,
        evaluator: Evaluator,
        budget: float | None = None,
        *,
        release: bool = True,
    ) -> int:
        """Carry out every row due at `now`, soonest first; how many there were.

        With a `budget` (seconds), no more rows are claimed once it is spent: the rest
        waits for the next tick, so a long queue of due actions does not hold up polls
        and the leadership check (the loop ticks again at once while rows are due).
        With `release` (the leading daemon), queued runs whose turn has come start first."""
        count = 0
        started = time.monotonic()
        while budget is None or time.monotonic() - started < budget:
            rows = self.state.claim_due(now, self.owner, self.lease, limit=50)
            if not rows:
                # The rows just carried out may have ended the runs queued runs wait on.
                if release and self.release_queued(now, rules, evaluator):
                    continue
                return count
            for row in rows:
                count += 1
                try:
                    self.fire(row, now, rules, evaluator)
                except CrmflowError as exc:
                    self.finish(row, PendingStatus.FAILED, str(exc))
            if self._busy:
                pause = timedelta(seconds=HOST_BUSY_PAUSE)
                self.executor.give_back(self._busy, self.owner, now + pause)
                count -= len(self._busy)
                self._busy.clear()
        return count

    def release_queued(self, now: datetime, rules: RuleSet, evaluator: Evaluator) -> int:
        """Start each queued run (mode: queued) whose record has no earlier run under way.

        The run is planned afresh, as its change would be now: against the record as it
        is, with its delays counted from now, under the keys its change gives. Its row
        ends only after that, so a daemon stopped in between plans it again, and the
        keys make whatever it had begun count once. Returns how many runs it ended."""
        ended = 0
        for row in releasable(self.state):
            workflow = rules.by_id.get(row.workflow)
            record = self.executor.services.require_crm().get(row.entity, row.record_id)
            if workflow is None or not workflow.enabled:
                why = f"workflow {row.workflow} was removed or disabled"
            elif record is None:
                why = f"{row.entity} {row.record_id} is gone"
            else:
                # Told first: what the run then does reads as following from it.
                self.state.record_pending("released", row, "its turn: the runs before it ended")
                self._note(row, "released: the runs before it ended")
                why = self._start(row, workflow, record, now, evaluator)
            ended += 1
            if why is not None:
                self.finish(row, PendingStatus.CANCELLED, why)
            else:
                self.state.take_queued(row.id)
        return ended

    def _start(
        self,
        row: PendingAction,
        workflow: Workflow,
        record: dict[str, Any],
        now: datetime,
        evaluator: Evaluator,
    ) -> str | None:
        """Plan and carry out a released run; why it did not fire, if it did not."""
        stored = Event.from_stored(row.entity, row.context["event"], record)
        version = row.context["change"].split(":", 1)[1]
        event = replace(stored, at=now, version=version)
        self.executor.releasing = row.key
        try:
            plan = evaluator.evaluate(event, now, only={workflow.id})
        finally:
            self.executor.releasing = None
        self.executor.record_plan(plan)
        fired = next((r for r in plan.rules if r.rule == workflow.id), None)
        if fired is not None and fired.matched:
            return None
        reason = fired.reason if fired is not None else None
        return f"no longer fires: {reason or 'its trigger does not hold'}"

    def fire(self, row: PendingAction, now: datetime, rules: RuleSet, evaluator: Evaluator) -> None:
        if row.action_type == "schedule":
            return self.schedules.run(row, now, rules, evaluator)
        workflow = rules.by_id.get(row.workflow)
        if workflow is None or not workflow.enabled:
            return self.finish(
                row, PendingStatus.CANCELLED, f"workflow {row.workflow} was removed or disabled"
            )
        if row.action_type == DIGEST:
            return self._hand_over(row, workflow, now)
        if (
            row.action_index >= len(workflow.actions)
            or workflow.actions[row.action_index].type != row.action_type
        ):
            return self.finish(
                row, PendingStatus.CANCELLED, "the workflow changed: this action is gone"
            )
        if self.executor.held(workflow.id):
            # Held by its cap or by hand: back to the table (after the same short pause
            # as a busy host's row), to run once `crmflow resume` releases it.
            self._busy.append(row.id)
            return None
        if row.action_type == "wait":
            return self.waits.end(row, workflow, met=False, now=now)
        if self.workers is not None and row.action_type not in IN_DATABASE:
            return self._hand_over(row, workflow, now)
        self._note(row, self.executor.fire_pending(row, workflow, now))
        return None

    def _note(self, row: PendingAction, note: str | None) -> None:
        log_row(self.log, row, note)

    def _hand_over(self, row: PendingAction, workflow: Workflow, now: datetime) -> None:
        """Check and render the row here, then leave its try to a worker (without
        workers, try it here)."""
        digest = row.action_type == DIGEST
        if digest:
            ready = self.executor.prepare_digest(row, workflow)
        else:
            ready = self.executor.prepare_pending(row, workflow, now)
        if isinstance(ready, Settled):
            return self._note(row, ready.note)
        if self.workers is None:
            if not self.executor.held_back(ready, now):
                self._try(ready, now)
            return None
        kind = workflow.actions[row.action_index].type if digest else row.action_type
        host = destination(kind, ready.params, self.executor.services.config)
        if not self.workers.has_room(host):
            # The host is slow or hangs: its row waits in the table, not in memory.
            self._busy.append(row.id)
            return None
        if self.executor.held_back(ready, now):
            return None
        self.workers.submit(
            Task(
                host,
                lambda: self._try(ready, now),
                lambda: self.executor.give_back([row.id], self.owner),
                time.monotonic() + self.lease * QUEUED_SHARE,
                row.id,
            )
        )
        return None

    def _try(self, ready: Ready, now: datetime) -> None:
        """On a worker: the try, recorded through the worker's own state connection."""
        self._note(ready.row, self.executor.try_ready(ready, now))

    def in_hand(self) -> frozenset[int]:
        """Rows claimed by this daemon and queued or running on its workers."""
        return frozenset() if self.workers is None else self.workers.in_hand()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait for the workers' actions to be tried and recorded (True when all were)."""
        return True if self.workers is None else self.workers.settle(timeout)

    def stop(self, timeout: float) -> None:
        """On the way out: queued rows go back to the table; running ones get `timeout`."""
        if self.workers is None:
            return
        left = self.workers.stop(timeout)
        if left:
            self.log.warn(
                f"{left} action(s) still waiting on their hosts at stop: they run again, "
                "under the same keys, when their claims run out"
            )

    def finish(
        self, row: PendingAction, status: PendingStatus, reason: str | None, history: bool = False
    ) -> None:
        finish(self.executor, self.log, row, status, reason, history)
