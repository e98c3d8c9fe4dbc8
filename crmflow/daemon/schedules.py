"""Schedule workflows in the daemon: planning each next cron occurrence and running it.

Each enabled schedule workflow has exactly one pending `schedule` row, due at its next
occurrence; running it evaluates the workflow for every record of its entity (unless the
occurrence was missed beyond `grace` or `catch_up: skip`) and plans the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import islice
from typing import Any

from crmflow.daemon.log import Log
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event
from crmflow.engine.execute import Executor
from crmflow.keys import record_version
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow
from crmflow.state.store import PendingAction, PendingStatus, State
from crmflow.timeutil import format_utc

Finish = Callable[[PendingAction, PendingStatus, str | None], None]


def schedule_workflows(rules: RuleSet) -> list[Workflow]:
    """The enabled workflows with a cron (schedule) trigger."""
    return [w for w in rules.workflows if w.enabled and w.trigger.kind == "schedule"]


def next_runs(rules: RuleSet, now: datetime, tz: tzinfo, count: int) -> list[tuple[datetime, str]]:
    """The next `count` (run time, workflow id) of schedule workflows, soonest first."""
    runs: list[tuple[datetime, str]] = []
    for workflow in schedule_workflows(rules):
        cron = workflow.trigger.cron
        assert cron is not None
        runs.extend(
            (moment, workflow.id) for moment in islice(cron.occurrences(now, tz), max(count, 0))
        )
    return sorted(runs)[:count]


@dataclass
class Schedules:
    """Plans and runs the pending `schedule` rows of the daemon's schedule workflows."""

    state: State
    executor: Executor
    log: Log
    tz: tzinfo
    poll_interval: float
    records: Callable[[str], list[dict[str, Any]]]
    finish: Finish

    def ensure(self, rules: RuleSet, now: datetime) -> None:
        """Cancel the rows of schedules gone; plan the next occurrence of those unplanned."""
        active = {w.id for w in schedule_workflows(rules)}
        for row in self.state.find_pending(
            action_type="schedule", statuses=(PendingStatus.PENDING,)
        ):
            if row.workflow not in active:
                self.finish(
                    row, PendingStatus.CANCELLED, f"workflow {row.workflow} was removed or disabled"
                )
        planned = {
            r.workflow
            for r in self.state.find_pending(
                action_type="schedule", statuses=(PendingStatus.PENDING,)
            )
        }
        for workflow in schedule_workflows(rules):
            if workflow.id not in planned:
                self.plan_occurrence(workflow, now)

    def plan_occurrence(self, workflow: Workflow, after: datetime) -> None:
        cron = workflow.trigger.cron
        assert cron is not None
        due = cron.next_after(after, self.tz)
        if due is None:
            return
        self.state.schedule(
            key=f"schedule:{workflow.id}:{format_utc(due)}",
            workflow=workflow.id,
            workflow_version=workflow.version,
            entity=workflow.entity,
            record_id=None,
            action_index=-1,
            action_type="schedule",
            due=due,
            context={"cron": cron.text},
        )

    def run(self, row: PendingAction, now: datetime, rules: RuleSet, evaluator: Evaluator) -> None:
        """Run one due occurrence (or skip it when missed), then plan the next."""
        workflow = rules.by_id.get(row.workflow)
        if workflow is None or not workflow.enabled or workflow.trigger.kind != "schedule":
            return self.finish(
                row, PendingStatus.CANCELLED, f"workflow {row.workflow} was removed or changed"
            )
        occurrence = row.due_at or now
        late = (now - occurrence).total_seconds()
        trigger = workflow.trigger
        missed = late > max(2 * self.poll_interval + 5, 30)
        skip = None
        if trigger.grace is not None and late > trigger.grace.approx_seconds():
            skip = f"missed {format_utc(occurrence)} by more than grace {trigger.grace}"
        elif missed and trigger.catch_up == "skip":
            skip = f"missed {format_utc(occurrence)} (catch_up: skip)"
        if skip is None:
            fired = 0
            for record in self.records(workflow.entity):
                event = Event(
                    workflow.entity,
                    "tick",
                    record,
                    None,
                    None,
                    at=occurrence,
                    rule=workflow.id,
                    version=record_version(record, format_utc(occurrence)),
                )
                plan = evaluator.evaluate(event, now)
                fired += sum(1 for r in plan.rules if r.matched)
                self.executor.record_plan(plan)
            detail = f"run for {format_utc(occurrence)}: fired for {fired} record(s)"
        else:
            detail = skip
        self.state.update_pending(row.id, status=PendingStatus.DONE, last_error=None)
        self.state.record(
            "done" if skip is None else "skipped",
            workflow=workflow.id,
            entity=workflow.entity,
            action_type="schedule",
            key=row.key,
            detail=detail,
        )
        self.log.action(workflow.id, "schedule", detail)
        self.plan_occurrence(workflow, max(now, occurrence))
        return None
