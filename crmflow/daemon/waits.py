"""Waits in the daemon: ending a pending `wait` when its `until` holds or it times out.

A wait is a pending row; the actions after it are `waiting` rows that point at it
(`wait_id`). When a change of the record makes `until` hold, or the wait falls due
(timed out), its followers become pending (continue) or are cancelled (stop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from crmflow.daemon.log import Log
from crmflow.engine.events import Event
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow
from crmflow.state.store import PendingAction, PendingStatus, State
from crmflow.timeutil import DateOutOfRange


@dataclass
class Waits:
    """Checks and ends the pending waits of the daemon's workflows."""

    state: State
    log: Log
    tz: tzinfo
    related: Callable[[], Any]
    # The entities whose workflows wait with `until`, worked out once per rule set.
    _until: tuple[RuleSet, frozenset[str]] | None = field(default=None, init=False)

    def _waiting_entities(self, rules: RuleSet) -> frozenset[str]:
        if self._until is None or self._until[0] is not rules:
            entities = frozenset(
                w.entity for w in rules.workflows if any(a.until is not None for a in w.actions)
            )
            self._until = (rules, entities)
        return self._until[1]

    def check(self, rules: RuleSet, event: Event, now: datetime) -> None:
        """End (as met) each pending wait on the event's record whose `until` now holds."""
        if event.entity not in self._waiting_entities(rules):
            return  # no workflow of this entity waits with `until`: no row to look up
        for row in self.state.find_pending(
            entity=event.entity,
            record_id=event.id,
            action_type="wait",
            statuses=(PendingStatus.PENDING,),
        ):
            workflow = rules.by_id.get(row.workflow)
            if workflow is None or row.action_index >= len(workflow.actions):
                continue
            action = workflow.actions[row.action_index]
            if action.until is None:
                continue
            facts = event.facts(now, self.tz, self.related())
            if action.until.check(facts):
                self.end(row, workflow, met=True, now=now)

    def end(self, row: PendingAction, workflow: Workflow, *, met: bool, now: datetime) -> None:
        """Close the wait `row`, releasing or cancelling the actions that wait on it."""
        action = workflow.actions[row.action_index]
        go_on = (action.on_met if met else action.on_timeout) == "continue"
        why = "until held" if met else "timed out"
        for follower in self.state.find_pending(
            workflow=row.workflow,
            entity=row.entity,
            record_id=row.record_id,
            statuses=(PendingStatus.WAITING,),
        ):
            if follower.wait_id != row.id:
                continue
            if go_on:
                due = follower.due_at if not met else self._after(workflow, follower, now)
                self.state.update_pending(follower.id, status=PendingStatus.PENDING, due_at=due)
            else:
                self.state.update_pending(
                    follower.id,
                    status=PendingStatus.CANCELLED,
                    last_error=f"wait {why}; on_{'met' if met else 'timeout'}: stop",
                )
                self.state.record_pending("cancelled", follower, f"the wait {why} and says stop")
        self.state.update_pending(row.id, status=PendingStatus.DONE, last_error=None)
        self.state.record_pending("done", row, f"wait {why}: {'continue' if go_on else 'stop'}")
        self.log.action(row.workflow, "wait", f"{why}: {'continue' if go_on else 'stop'}")

    def _after(self, workflow: Workflow, row: PendingAction, now: datetime) -> datetime:
        action = workflow.actions[row.action_index]
        try:
            return action.due_from(now, self.tz)
        except DateOutOfRange:
            return row.due_at or now  # a delay past year 9999: it stays where it was
