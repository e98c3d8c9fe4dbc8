"""Blast-radius caps: a workflow that suddenly acts on many records stops itself.

A workflow's `limit: {max, per}` (or the configuration's `limit:` for all) allows `max`
runs within `per`. The run past it pauses the workflow: a flag in the state says why,
the configured `admins` are told (inbox and e-mail), and every action of the workflow
is held as a pending row, due actions included, until `crmflow resume WORKFLOW`. A bad
import or a typo in a condition then costs `max` actions, not thousands; nothing held is
dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crmflow.durations import Duration
from crmflow.timeutil import format_utc

if TYPE_CHECKING:
    from crmflow.config import Config
    from crmflow.rules.workflow import Workflow
    from crmflow.state.store import State

HELD = "held:"


def held_flag(workflow_id: str) -> str:
    return f"{HELD}{workflow_id}"


def limit_of(workflow: Workflow, config: Config) -> tuple[int, Duration] | None:
    if workflow.limit is not None:
        return workflow.limit
    spec = config.raw.get("limit")
    if not isinstance(spec, dict):
        return None
    from crmflow import durations

    return int(spec["max"]), durations.parse(spec.get("per", "1h"))


class Caps:
    def __init__(self, state: State, config: Config) -> None:
        self.state = state
        self.config = config

    def held(self, workflow_id: str) -> str | None:
        """Why the workflow is held (paused by its cap or by hand), or None."""
        return self.state.flag(held_flag(workflow_id))

    def over(self, workflow: Workflow, now: datetime) -> str | None:
        """The reason to hold this run of `workflow`, when its runs in the window have
        reached its limit already; None otherwise (or without a limit)."""
        limit = limit_of(workflow, self.config)
        if limit is None:
            return None
        most, per = limit
        since = now - timedelta(seconds=per.approx_seconds())
        runs = list(self.state.history(most, workflow=workflow.id, since=since, outcomes=["fired"]))
        if len(runs) < most:
            return None
        return (
            f"limit reached: {len(runs)} runs since {format_utc(since)} (limit: max {most} "
            f"per {per}); held until `crmflow resume {workflow.id}`"
        )

    def hold(self, workflow_id: str, reason: str) -> None:
        self.state.set_flag(held_flag(workflow_id), reason)


def admins_notice(workflow_id: str, reason: str) -> dict[str, Any]:
    """What the admins are told, as a notify action's parameters."""
    return {
        "subject": f"crmflow: workflow {workflow_id} paused itself",
        "body": f"{reason}.\n\nIts actions are held, not dropped: look at them with "
        f"`crmflow pending list`, then `crmflow resume {workflow_id}`.",
        "via": ["inbox", "email"],
    }
