"""The compiled workflow model: what loading produces once and evaluation reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from crmflow.durations import Duration
from crmflow.errors import Location
from crmflow.rules.actions import ActionDef
from crmflow.rules.conditions import Condition
from crmflow.rules.digest import DigestSpec
from crmflow.rules.templates import source_tree
from crmflow.rules.triggers import CompiledTrigger


# Slotted: a rule set of thousands of workflows holds one of each per workflow or action.
@dataclass(frozen=True, eq=False, slots=True)
class Action:
    index: int
    type: str
    definition: ActionDef
    # The parameters with template strings compiled (templates.compile_tree): the very
    # mapping as written when none is a template, so one copy serves as both.
    params: Any
    location: Location
    id: str | None = None
    delay: Duration | None = None
    condition: Condition | None = None
    # wait
    wait_for: Duration | None = None
    until: Condition | None = None
    on_met: str = "continue"
    on_timeout: str = "continue"
    within: str | None = None  # "business_hours": due at the next working moment
    digest: DigestSpec | None = None  # notify/email: collected, sent together (digest.py)

    def due_from(self, base: datetime, tz: tzinfo) -> datetime:
        """When the action is due for something that happened at `base`: its delay on,
        then (with `within`) at the next working moment of the zone's calendar."""
        due = self.delay.add_to(base, tz) if self.delay is not None else base
        if self.within == "business_hours":
            from crmflow.workdays import next_working_moment

            due = next_working_moment(due, tz)
        return due

    @property
    def raw(self) -> Any:
        """The action's parameters as written.

        Not kept beside `params`: for an action type that renders no templates it is
        `params` itself; otherwise it is rebuilt from the templates' sources, a rare need.
        """
        if not self.definition.templated:
            return self.params
        return source_tree(self.params)


@dataclass(frozen=True, eq=False, slots=True)
class Workflow:
    id: str
    entity: str
    trigger: CompiledTrigger
    condition: Condition
    actions: tuple[Action, ...]
    location: Location
    name: str = ""
    enabled: bool = True
    cooldown: Duration | None = None
    # At most `max` runs within `per` (its own `limit:`, or None for the configuration's).
    limit: tuple[int, Duration] | None = None
    run_as: Any = None
    # What a new run does while an earlier run for the same record still has actions
    # waiting (engine/modes.py): parallel (beside it), single, restart, queued.
    mode: str = "parallel"
    max_runs: int | None = None  # queued/parallel: runs waiting at most, per record
    # A hash of the workflow's text, so pending actions know which version made them.
    version: str = ""

    @property
    def depends_on_state(self) -> bool:
        """Whether matching needs more than the event: a date trigger's fire time, a cooldown."""
        return self.trigger.kind == "date" or self.cooldown is not None

    @property
    def title(self) -> str:
        return self.name or self.id
