"""Date triggers for the records that exist when a workflow first runs.

A `date` trigger plans its pending row when a record is created or saved. Records that
were there before the daemon (or before the workflow) saw no such change, so each date
workflow, once per version, is evaluated for every live record of its entity: whatever
date lies ahead gets its pending row, and nothing else fires. Which versions were planned
is kept in the state database, so a restart does not plan them again; a changed
workflow replans (its older rows are replaced, as a record's new save replaces them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crmflow.daemon.capture import Capture
from crmflow.daemon.log import Log
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event
from crmflow.engine.execute import Executor
from crmflow.keys import record_version
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow


def date_workflows(rules: RuleSet) -> list[Workflow]:
    return [w for w in rules.workflows if w.enabled and w.trigger.kind == "date"]


@dataclass
class Dates:
    capture: Capture
    executor: Executor
    log: Log

    def _flag(self, workflow: Workflow) -> str:
        return f"dates:{workflow.id}"

    def ensure(self, rules: RuleSet, evaluator: Evaluator, now: datetime) -> None:
        """Plan the dates of existing records for each date workflow not planned yet."""
        state = self.capture.state
        for workflow in date_workflows(rules):
            if state.flag(self._flag(workflow)) == workflow.version:
                continue
            planned = seen = 0
            for records in self.capture.pages(workflow.entity):
                for record in records:
                    seen += 1
                    # The workflow's version is part of the change's version, so a changed
                    # workflow's rows get keys of their own.
                    event = Event(
                        workflow.entity,
                        "updated",
                        record,
                        at=now,
                        version=f"{record_version(record)}:{workflow.version}",
                    )
                    plan = evaluator.evaluate(event, now, only=(workflow.id,))
                    for rule in plan.rules:
                        if rule.matched:
                            planned += 1
                            self.executor.record_decision(rule, event)
            state.set_flag(self._flag(workflow), workflow.version)
            self.log.note(
                f"{workflow.id}: planned {planned} date(s) among {seen} existing "
                f"{workflow.entity} record(s)"
            )

    def mark_planned(self, rules: RuleSet, entities: set[str]) -> None:
        """The date workflows of `entities` saw every record already (a backfill)."""
        for workflow in date_workflows(rules):
            if workflow.entity in entities:
                self.capture.state.set_flag(self._flag(workflow), workflow.version)
