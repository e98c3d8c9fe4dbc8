"""Due pending actions: each row claimed when its time comes and carried out.

The one path by which a delayed action fires or is cancelled, a wait times out and a
schedule occurrence runs, whether the daemon's loop calls it or `crmflow test` rehearses
a case (crmflow.daemon.rehearsal), so the two cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from crmflow.daemon.log import Log
from crmflow.daemon.schedules import Schedules
from crmflow.daemon.waits import Waits
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.execute import Executor
from crmflow.errors import CrmflowError
from crmflow.rules.ruleset import RuleSet
from crmflow.state.store import PendingAction, PendingStatus, State


def finish(
    executor: Executor,
    log: Log,
    row: PendingAction,
    status: PendingStatus,
    reason: str | None,
    history: bool = False,
) -> None:
    """End a pending row; the log says so when the history does."""
    note = executor.finish(row, status, reason, history=history)
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

    def run(
        self, now: datetime, rules: RuleSet, evaluator: Evaluator, budget: float | None = None
    ) -> int:
        """Carry out every row due at `now`, soonest first; how many there were.

        With a `budget` (seconds), no more rows are claimed once it is spent: the rest
        waits for the next tick, so a long queue of due actions does not hold up polls
        and the leadership check (the loop ticks again at once while rows are due)."""
        count = 0
        started = time.monotonic()
        while budget is None or time.monotonic() - started < budget:
            rows = self.state.claim_due(now, self.owner, self.lease, limit=50)
            if not rows:
                return count
            for row in rows:
                count += 1
                try:
                    self.fire(row, now, rules, evaluator)
                except CrmflowError as exc:
                    self.finish(row, PendingStatus.FAILED, str(exc))
        return count

    def fire(self, row: PendingAction, now: datetime, rules: RuleSet, evaluator: Evaluator) -> None:
        if row.action_type == "schedule":
            return self.schedules.run(row, now, rules, evaluator)
        workflow = rules.by_id.get(row.workflow)
        if workflow is None or not workflow.enabled:
            return self.finish(
                row, PendingStatus.CANCELLED, f"workflow {row.workflow} was removed or disabled"
            )
        if (
            row.action_index >= len(workflow.actions)
            or workflow.actions[row.action_index].type != row.action_type
        ):
            return self.finish(
                row, PendingStatus.CANCELLED, "the workflow changed: this action is gone"
            )
        if row.action_type == "wait":
            return self.waits.end(row, workflow, met=False, now=now)
        note = self.executor.fire_pending(row, workflow, now)
        if note is not None:
            self.log.action(
                row.workflow,
                row.action_type,
                note,
                entity=row.entity,
                record=row.record_id,
                key=row.key,
            )
        return None

    def finish(
        self, row: PendingAction, status: PendingStatus, reason: str | None, history: bool = False
    ) -> None:
        finish(self.executor, self.log, row, status, reason, history)
