"""Run modes: what a workflow's new run for a record does while an earlier run waits.

A run is one firing of a workflow for one record: the actions one change set going. It
is "still waiting" while any of its actions is stored for later (a delay, a wait, a
retry) and not yet ended. The workflow's `mode` decides what a new run does then, as
Home Assistant's script modes do:

- parallel (the default, and crmflow's behaviour before modes): the new run starts
  beside the earlier ones; with `max_runs`, one past that many waiting runs is dropped.
- single: the new run is dropped while an earlier one waits.
- restart: the earlier runs' waiting actions are cancelled, and the new run starts.
- queued: the new run is stored whole, as one queued row, and starts when the runs
  before it have ended (judged then against the record as it is); with `max_runs`, one
  past that many runs, waiting and queued, is dropped.

Each of these decisions is in the history: "dropped", "queued", "released", and a
"cancelled" entry for every action a restart ends. Runs are told apart by the change
that set them going (the `run` every stored row carries), so the same change handled
again after a restart is the same run, not a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crmflow.keys import action_key
from crmflow.rules.workflow import Workflow
from crmflow.state.store import PendingAction, PendingStatus, State

# Rows of a run that is still under way (a failed row waits for a person, not a run).
ACTIVE = (PendingStatus.PENDING, PendingStatus.WAITING, PendingStatus.RUNNING)
# The index a queued run's row carries: it stands for the whole run, not one action.
WHOLE_RUN = -1
# The action type of a queued run's row.
QUEUED_RUN = "run"


def run_id(workflow: str, entity: str, record_id: Any, change: str) -> str:
    """The run a change sets going: the same change gives the same id."""
    return action_key(workflow, entity, record_id, change, WHOLE_RUN)


@dataclass(frozen=True)
class Earlier:
    """The runs of a workflow for one record, other than the one being decided."""

    active: dict[str, list[PendingAction]]  # run id -> its rows still under way
    queued: list[PendingAction]  # queued runs' rows, oldest first

    @property
    def count(self) -> int:
        return len(self.active) + len(self.queued)


def earlier_runs(
    state: State, workflow: Workflow, entity: str, record_id: Any, run: str
) -> Earlier:
    rows = state.find_pending(
        workflow=workflow.id,
        entity=entity,
        record_id=record_id,
        statuses=(*ACTIVE, PendingStatus.QUEUED),
    )
    active: dict[str, list[PendingAction]] = {}
    queued: list[PendingAction] = []
    for row in rows:
        # Rows stored before runs were named: each counts as a run of its own.
        owner = row.context.get("run") or row.key
        if owner == run:
            continue
        if row.status == PendingStatus.QUEUED:
            queued.append(row)
        else:
            active.setdefault(owner, []).append(row)
    return Earlier(active, queued)


@dataclass(frozen=True)
class Verdict:
    """What the new run does: go (after cancelling `cancel`), be dropped, or be queued."""

    go: bool
    why: str = ""
    queue: bool = False
    cancel: tuple[PendingAction, ...] = ()


GO = Verdict(True)


def decide(workflow: Workflow, earlier: Earlier) -> Verdict:
    """The verdict of the workflow's mode on a new run, given the runs before it."""
    mode, most = workflow.mode, workflow.max_runs
    waiting = len(earlier.active)
    if mode == "parallel":
        if most is not None and waiting >= most:
            return Verdict(False, f"mode parallel: {_runs(waiting)} waiting (max_runs {most})")
        return GO
    if mode == "single":
        if waiting:
            return Verdict(False, f"mode single: {_runs(waiting)} waiting")
        return GO
    if mode == "restart":
        rows = tuple(row for rows in earlier.active.values() for row in rows)
        return Verdict(True, cancel=rows + tuple(earlier.queued))
    # queued
    if not earlier.count:
        return GO
    if most is not None and earlier.count >= most:
        return Verdict(
            False, f"mode queued: {_runs(earlier.count)} waiting or queued (max_runs {most})"
        )
    ahead = f"{_runs(waiting)} waiting" + (
        f", {len(earlier.queued)} queued" if earlier.queued else ""
    )
    return Verdict(False, f"mode queued: starts when the runs before it end ({ahead})", queue=True)


def _runs(count: int) -> str:
    return f"{count} earlier run" + ("" if count == 1 else "s")


def releasable(state: State) -> list[PendingAction]:
    """The oldest queued run of each (workflow, record) with no run still under way."""
    queued = state.pending_actions(PendingStatus.QUEUED)
    if not queued:
        return []
    chosen: dict[tuple[str, str, str | None], PendingAction] = {}
    for row in sorted(queued, key=lambda r: (r.created_at, r.id)):
        chosen.setdefault((row.workflow, row.entity, row.record_id), row)
    return [row for row in chosen.values() if not _under_way(state, row)]


def _under_way(state: State, row: PendingAction) -> bool:
    return bool(
        state.find_pending(
            workflow=row.workflow, entity=row.entity, record_id=row.record_id, statuses=ACTIVE
        )
    )


def cancelled_by_restart(rows: Iterable[PendingAction]) -> list[PendingAction]:
    """The rows a restart may end: not those a daemon is carrying out right now."""
    return [row for row in rows if row.status != PendingStatus.RUNNING]
