"""Carrying plans out: immediate actions now, later ones into the state database.

The Executor is the evaluator's performer when actions are real. In `eval` it retries
transient failures (connection errors, HTTP 5xx/408/429, SMTP 4xx) inline with
exponential backoff and jitter; in the daemon a retry becomes a pending row due later,
and the daemon hands due rows back to `fire_pending`. Whether and when to retry is
`RetryPolicy.decide`, the same in every path. Every outcome goes to the history; delayed
actions and everything after a `wait` are stored as pending actions; CRM writes are
noted so the changes they cause are known as crmflow's own (chains).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from crmflow.engine.caps import HELD, Caps, admins_notice, held_flag
from crmflow.engine.digests import DIGEST
from crmflow.engine.effects.base import Job, Outcome, Services, Transient
from crmflow.engine.evaluate import ActionRun, Plan, RulePlan, template_context
from crmflow.engine.events import Event
from crmflow.engine.limits import RateLimits
from crmflow.engine.modes import (
    ACTIVE,
    QUEUED_RUN,
    WHOLE_RUN,
    cancelled_by_restart,
    decide,
    earlier_runs,
    run_id,
)
from crmflow.engine.retry import GiveUp, RetryPolicy
from crmflow.errors import ActionError, CrmflowError
from crmflow.keys import action_key, record_version
from crmflow.rules.actions import IN_DATABASE
from crmflow.rules.conditions import Facts
from crmflow.rules.templates import TemplateFailure, render_tree
from crmflow.rules.workflow import Action, Workflow
from crmflow.state.store import PendingAction, PendingStatus, State
from crmflow.timeutil import format_utc


@dataclass(frozen=True)
class Ready:
    """A due pending row checked and rendered, to be tried."""

    row: PendingAction
    workflow: Workflow
    event: Event
    params: Any


@dataclass(frozen=True)
class Settled:
    """A due pending row ended without a try; `note` is what the log says, if anything."""

    note: str | None


def _failed_for_now(outcome: Outcome) -> bool:
    return outcome.transient and outcome.status == "failed"


def _change(run: ActionRun) -> str:
    """The change an action's run answers, as its keys name it."""
    event = run.event
    # The same change seen again gives the same key. An event names its moment with
    # `at`; without it, its content is the change (a tick's moment is always part).
    moment = event.at or (run.now if event.event == "tick" else None)
    version = event.version or record_version(
        event.record, event.event, event.previous, format_utc(moment) if moment else None
    )
    # The kind is part of it: a deletion of an unchanged row is another change.
    return f"{event.event}:{version}"


def _no_longer_holds(workflow: Workflow, action: Action, facts: Facts) -> str | None:
    """Why a stored action may no longer go: its workflow's or its own `if` now fails."""
    for label, condition in (("conditions", workflow.condition), ("if", action.condition)):
        if condition is not None and not condition.check(facts):
            return f"{label} no longer hold: {condition.reason(facts)}"
    return None


# How long an effect already made waits for its record while the state database is
# unavailable, before the tick gives up (and the effect may be repeated, under its key).
RECORD_PATIENCE = 120.0


class Executor:
    """Performs actions for real (see evaluate.Performer)."""

    def __init__(
        self,
        services: Services,
        state: State | None,
        *,
        retry: RetryPolicy | None = None,
        inline_retries: bool = True,
        inline_limit: float = 60.0,
        paused: Callable[[], bool] = lambda: False,
        effects: Mapping[str, Callable[[Job], Outcome]] | None = None,
    ) -> None:
        self.services = services
        self.state = state
        # How each action type reaches the world; None: the real effects, loaded with the
        # first action (a rehearsal hands in effects that only say what they would do).
        self.effects = effects
        policy = retry or RetryPolicy.from_settings(services.config.retry)
        self.policy = policy
        # Inline retries block the caller (a shell, a CI job): at most `inline_limit` waiting.
        self.inline_policy = replace(
            policy, max_age=min(policy.max_age, inline_limit), blocking=True
        )
        self.inline_retries = inline_retries
        self.limits = RateLimits(
            webhook_per_host=services.config.webhooks.per_host_per_minute,
            email_per_minute=services.config.email.per_minute,
            shared=state.engine if state is not None else None,
        )
        self.paused = paused
        # Blast-radius caps (limit:) and workflows paused by hand: need the state.
        self.caps = Caps(state, services.config) if state is not None else None
        self._held: tuple[float, dict[str, str]] = (0.0, {})
        self.failed = 0
        # Told of each inline retry before its pause: `eval` says so on stderr, so that a
        # shell waiting on it knows why.
        self.notice: Callable[[str], None] | None = None
        # Told when recording an effect meets an unavailable state database (returns the
        # pause before the next try) and when it gets through: the daemon's fault log.
        self.on_fault: Callable[[BaseException], float] | None = None
        self.on_recovered: Callable[[], None] | None = None
        # The queued run being released (its run id): its mode has already had its say.
        self.releasing: str | None = None
        # The daemon: an action that waits on another host is not tried while a change is
        # handled but stored due at once, for the daemon's workers; the run's later
        # actions wait behind it for its outcome (and its steps.<id>). A hanging host then
        # holds up neither the poll nor other hosts' actions.
        self.hand_over = False

    # -- the performer ----------------------------------------------------------------
    def perform(self, run: ActionRun) -> dict[str, Any] | None:
        planned = run.planned
        key = self.key(run)
        if run.rule.failed:
            planned.status, planned.result = "skipped", "an earlier action of this workflow failed"
            self._history("skipped", run.workflow.id, run.event, run.action, key, planned.result)
            return None
        if not run.rule.mode_checked:
            run.rule.mode_checked = True
            self._apply_mode(run)
        if run.rule.set_aside is not None:
            queued = run.rule.set_aside_as == "queued"
            planned.status, planned.result = ("queued" if queued else "skipped"), run.rule.set_aside
            return None
        later = planned.due is not None and planned.due > run.now
        if run.action.type == "wait" or planned.after_wait or later or self.paused():
            return self._defer(run, key)
        if self.holds(run, key):
            return self._defer(run, key)  # held by its cap (or by hand): kept, not dropped
        if self.hand_over and (run.rule.led or self._waits_on_host(run.action)):
            return self._to_workers(run, key)
        outcome = self.run_now(run, key) if self.inline_retries else self._run_once(run, key)
        if outcome is None:  # stored to be tried later
            return None
        planned.status, planned.result = outcome.status, outcome.detail
        planned.key = key  # for the log: the action's idempotency key
        if outcome.status == "failed":
            self.failed += 1
            run.rule.failed = True
            if not self.inline_retries and self.state is not None:
                # Visible and retryable by hand (`crmflow pending retry ID`).
                self._store(run, key, run.now, PendingStatus.FAILED, last_error=outcome.detail)
        return outcome.output

    def key(self, run: ActionRun) -> str:
        event = run.event
        return action_key(run.workflow.id, event.entity, event.id, _change(run), run.action.index)

    def run_of(self, run: ActionRun) -> str:
        """The run this action belongs to: its workflow's firing for this change."""
        return run_id(run.workflow.id, run.event.entity, run.event.id, _change(run))

    # -- actions for the daemon's workers ---------------------------------------------
    @staticmethod
    def _waits_on_host(action: Action) -> bool:
        return action.type not in IN_DATABASE and action.digest is None

    def _to_workers(self, run: ActionRun, key: str) -> None:
        """Store an action due now instead of trying it: the daemon's workers try it
        (daemon/due.py). One that waits on a host leads the run's later actions, which
        are stored waiting behind it; `finish` lets them go, with its output, or cancels
        them when it fails."""
        planned = run.planned
        leads = self._waits_on_host(run.action)
        status = PendingStatus.WAITING if run.rule.led else PendingStatus.PENDING
        stored = self._store(run, key, run.now, status, leads=leads, now=True)
        if stored is None:  # this change was handled before: its rows are there
            stored = self._require_state().pending_id(key)
            planned.status, planned.result = "skipped", "already scheduled"
        else:
            planned.status = "scheduled"
            planned.result = "after the action before it" if run.rule.led else "to a worker now"
        if leads and stored is not None:
            run.rule.wait_row, run.rule.led = stored, True
        planned.key = key

    def _after_lead(
        self, row: PendingAction, status: PendingStatus, reason: str | None, output: Any
    ) -> None:
        """The run's actions waiting behind `row` (an action handed to the workers),
        once it has ended: due when it was done (with its output as steps.<id>);
        cancelled, every later action of the run, when it failed or was cancelled."""
        state = self._require_state()
        run = row.context.get("run")
        later = [
            r
            for r in state.find_pending(
                workflow=row.workflow,
                entity=row.entity,
                record_id=row.record_id,
                statuses=(PendingStatus.WAITING,),
            )
            if r.context.get("run") == run
        ]
        if status != PendingStatus.DONE:
            why = (
                "an earlier action of this workflow failed"
                if status == PendingStatus.FAILED
                else f"an earlier action of this workflow was cancelled: {reason}"
            )
            for follower in later:
                state.update_pending(follower.id, status=PendingStatus.CANCELLED, last_error=why)
                state.record_pending("cancelled", follower, why)
            return
        step = row.context.get("step")
        for follower in later:
            values: dict[str, Any] = {}
            if step:
                values["context"] = {
                    **follower.context,
                    "steps": {**(follower.context.get("steps") or {}), step: output or {}},
                }
            if follower.wait_id == row.id:
                values["status"] = PendingStatus.PENDING
            if values:
                state.update_pending(follower.id, **values)

    # -- run modes (engine/modes.py) --------------------------------------------------
    def _apply_mode(self, run: ActionRun) -> None:
        """Before a run's first action: its workflow's mode on the runs still waiting for
        the record. It may cancel them (restart), or set this run aside (dropped, queued)."""
        workflow, event = run.workflow, run.event
        if (
            self.state is None
            or event.id is None
            or workflow.trigger.kind == "schedule"
            or (workflow.mode == "parallel" and workflow.max_runs is None)
        ):
            return  # nothing to ask: the default mode runs beside whatever waits
        this = self.run_of(run)
        if this == self.releasing:
            return  # a queued run whose turn has come
        verdict = decide(workflow, earlier_runs(self.state, workflow, event.entity, event.id, this))
        state = self.state
        for row in cancelled_by_restart(verdict.cancel):
            # One that waited behind an action handed to the workers may have ended
            # with it, a moment ago: each is ended once.
            current = state.get_pending(row.id)
            if current is None or current.status not in (*ACTIVE, PendingStatus.QUEUED):
                continue
            self.finish(
                current,
                PendingStatus.CANCELLED,
                "restarted: a new run for this record replaces it (mode restart)",
            )
        if verdict.go:
            return
        run.rule.set_aside = verdict.why
        run.rule.set_aside_as = "queued" if verdict.queue else "dropped"
        if verdict.queue:
            stored = self._store(run, this, None, PendingStatus.QUEUED, whole_run=True)
            outcome = "queued" if stored is not None else "skipped"
        else:
            outcome = "dropped"
        self.state.record(
            outcome,
            workflow=workflow.id,
            entity=event.entity,
            record_id=event.id,
            action_type=QUEUED_RUN,
            key=this,
            detail=verdict.why,
        )

    # -- carrying one action out ------------------------------------------------------
    def attempt(
        self,
        workflow: Workflow,
        action: Action,
        event: Event,
        params: Any,
        key: str,
        now: datetime,
        *,
        attempt: int = 1,
        collect: bool = True,
    ) -> Outcome:
        """One try of the action; the outcome is recorded (a transient failure as such).
        An action with a digest is collected into it; `collect=False` sends the digest."""
        if self.state is not None and (done := self.state.done_action(key)) is not None:
            # Its output too: the later steps of a change finished after a restart see
            # `steps.<id>` (a created record's id) exactly as the first run did.
            outcome = Outcome("skipped", f"already done at {format_utc(done.at)}", done.output)
            self._history("skipped", workflow.id, event, action, key, outcome.detail)
            return outcome
        # Loaded with the first real action: dry runs never import mail and web modules.
        from crmflow.crm.failures import CrmUnavailable

        effects = self.effects
        if effects is None:
            from crmflow.engine.effects.by_type import EFFECTS

            effects = EFFECTS
        job = Job(self.services, workflow, action, event, params, key, now)
        if action.digest is not None and collect:
            # Its effect is an item of a digest in the state: no host to wait on.
            outcome = self._collect(job)
            self._durably(
                lambda: self._history(
                    outcome.status, workflow.id, event, action, key, outcome.detail
                )
            )
            return outcome
        # An effect that waits on another host (a webhook, a mail server) goes with the
        # daemon's unit of work committed before it and its record committed right after:
        # a SQLite state is not held locked while the host answers, and the window in
        # which a kill would repeat the send stays as narrow as without units.
        remote = self.state is not None and action.type not in IN_DATABASE
        if remote:
            self._durably(self._checkpoint)
        try:
            outcome = effects[action.type](job)
        except Transient as exc:
            return Outcome("failed", str(exc), transient=True, retry_after=exc.retry_after)
        except CrmUnavailable as exc:
            # The CRM layer's Transient (it sits below the engine and cannot raise ours): a
            # locked or unreachable CRM rolled the write back, so trying again is safe.
            return Outcome("failed", str(exc), transient=True)
        except (ActionError, TemplateFailure, CrmflowError) as exc:
            outcome = Outcome("failed", str(exc))
        self._durably(
            lambda: self._history(
                outcome.status, workflow.id, event, action, key, outcome.detail, outcome.output
            )
        )
        if outcome.status == "done" and self.state is not None and outcome.touched:
            state = self.state
            chain = [*(event.chain or []), [workflow.id, event.entity, event.id]]
            for entity, record_id in outcome.touched:
                self._durably(lambda e=entity, r=record_id: state.note_write(e, r, key, chain))
        if remote:
            self._durably(self._checkpoint)
        return outcome

    def _collect(self, job: Job) -> Outcome:
        from crmflow.engine.digests import collect

        assert job.action.digest is not None
        try:
            return collect(
                self._require_state(), job, job.action.digest, self.services.config.timezone
            )
        except CrmflowError as exc:
            return Outcome("failed", str(exc))
        except OverflowError:  # a sending past the year 9999
            return Outcome("failed", "the digest's next sending is out of range")

    def prepare_digest(self, row: PendingAction, workflow: Workflow) -> Ready | Settled:
        """A digest's sending row: its items as one message, Ready to be tried (or
        Settled: nothing was collected, or the workflow no longer has the digest)."""
        from crmflow.engine.digests import message

        index = row.action_index
        action = workflow.actions[index] if index < len(workflow.actions) else None
        kind = row.context.get("type") or (action.type if action is not None else None)
        if action is None or action.type != kind:
            # What was collected cannot go as it was meant to: say so, keep the items.
            gone = f"the workflow changed: the {kind} action that collected this digest is gone"
            return Settled(self.finish(row, PendingStatus.CANCELLED, gone, history=True))
        items = self._require_state().digest(row.key)
        if not items:
            return Settled(self.finish(row, PendingStatus.DONE, None))
        tz = self.services.config.timezone
        # An action that has lost its `digest:` since still sends what it collected.
        params = message(workflow, action, action.digest, row.context, items, tz)
        # A digest is of many records: its messages name none.
        return Ready(row, workflow, Event(workflow.entity, "tick", {}), params)

    def _checkpoint(self) -> None:
        if self.state is not None:
            self.state.checkpoint()

    def _durably(self, write: Callable[[], Any]) -> Any:
        """A state write that records an effect already made (sent, written).

        While the state database is unavailable (locked, unreachable) it is tried again
        with backoff, for up to RECORD_PATIENCE seconds: giving up would leave the effect
        unrecorded, and a restart would make it happen a second time.
        """
        from sqlalchemy.exc import SQLAlchemyError

        from crmflow.crm.failures import temporary

        waited, pause, failing = 0.0, 1.0, False
        while True:
            try:
                result = write()
            except SQLAlchemyError as exc:
                if not temporary(exc) or waited >= RECORD_PATIENCE:
                    raise
                if self.on_fault is not None:
                    pause = self.on_fault(exc)
                failing = True
                self.services.sleep(pause)
                waited += pause
                pause = min(pause * 2, 30.0)
                continue
            if failing and self.on_recovered is not None:
                self.on_recovered()
            return result

    def run_now(self, run: ActionRun, key: str) -> Outcome:
        """The action now, retrying transient failures inline (eval)."""
        attempts = 0
        waited = 0.0
        while True:
            attempts += 1
            outcome = self.attempt(
                run.workflow, run.action, run.event, run.params, key, run.now, attempt=attempts
            )
            if not _failed_for_now(outcome):
                return outcome
            decision = self.inline_policy.decide(attempts, waited, outcome, self.services.rng)
            if isinstance(decision, GiveUp):
                return self._gave_up(run, key, decision)
            self._history(
                "retried",
                run.workflow.id,
                run.event,
                run.action,
                key,
                f"attempt {attempts}: {outcome.detail}; next in {decision.pause:.2f}s",
            )
            if self.notice is not None:
                self.notice(
                    f"{run.workflow.id}: {run.action.type} failed ({outcome.detail}); "
                    f"retrying in {decision.pause:.1f}s "
                    f"(attempt {attempts + 1} of {self.inline_policy.max_attempts})"
                )
            self.services.sleep(decision.pause)
            waited += decision.pause

    def _run_once(self, run: ActionRun, key: str) -> Outcome | None:
        """One try now (the daemon); None when the action was stored to go later."""
        sends = run.action.digest is None  # collecting into a digest sends nothing
        if sends and (due := self._held_back(run.action.type, run.params, run.now)) is not None:
            self._store(run, key, due, PendingStatus.PENDING)
            run.planned.status, run.planned.result = (
                "scheduled",
                f"rate limit: due {format_utc(due)}",
            )
            return None
        outcome = self.attempt(run.workflow, run.action, run.event, run.params, key, run.now)
        if not _failed_for_now(outcome):
            return outcome
        decision = self.policy.decide(1, 0.0, outcome, self.services.rng)
        if isinstance(decision, GiveUp):
            return self._gave_up(run, key, decision)
        due = run.now + timedelta(seconds=decision.pause)
        self._store(run, key, due, PendingStatus.PENDING, attempts=1, last_error=outcome.detail)
        run.planned.status = "scheduled"
        run.planned.result = f"{outcome.detail}; retry at {format_utc(due)}"
        self._history("retried", run.workflow.id, run.event, run.action, key, run.planned.result)
        return None

    def _gave_up(self, run: ActionRun, key: str, decision: GiveUp) -> Outcome:
        self._history("failed", run.workflow.id, run.event, run.action, key, decision.detail)
        return Outcome("failed", decision.detail, transient=True)

    def _held_back(self, action_type: str, params: Any, now: datetime) -> datetime | None:
        """When a rate limit lets the action go, if not now (going now counts as a send)."""
        pause = self.limits.wait(action_type, params, now)
        return now + timedelta(seconds=pause) if pause > 0 else None

    # -- pending rows (the daemon) ----------------------------------------------------
    def fire_pending(self, row: PendingAction, workflow: Workflow, now: datetime) -> str | None:
        """A due pending action: re-checked against the record as it is now, then tried.

        The row ends done, failed or cancelled, or is due again later (a retry, a rate
        limit). Returns what the daemon's log should say about it, if anything.
        """
        ready = self.prepare_pending(row, workflow, now)
        if isinstance(ready, Settled):
            return ready.note
        if self.held_back(ready, now):
            return None
        return self.try_ready(ready, now)

    def prepare_pending(
        self, row: PendingAction, workflow: Workflow, now: datetime
    ) -> Ready | Settled:
        """A due row re-checked against its record and its templates rendered: Ready to
        be tried, or Settled here (cancelled, failed) with what the log should say.

        It reads the CRM, so it runs on the daemon's thread, inside its CRM batch."""
        action = workflow.actions[row.action_index]
        if row.context.get("now"):
            return self._prepare_handed_over(row, workflow, action)
        current = self.services.require_crm().get(row.entity, row.record_id)
        if current is None:
            gone = f"{row.entity} {row.record_id} is gone"
            return Settled(self.finish(row, PendingStatus.CANCELLED, gone))
        event = Event.from_stored(row.entity, row.context["event"], current)
        facts = self._facts_at_fire_time(row, workflow, event, now)
        if (reason := _no_longer_holds(workflow, action, facts)) is not None:
            return Settled(self.finish(row, PendingStatus.CANCELLED, reason))
        context = template_context(
            event, now, facts.tz, facts.related, workflow, row.context.get("steps")
        )
        try:
            params = (
                render_tree(action.params, context) if action.definition.templated else action.raw
            )
        except TemplateFailure as exc:
            return Settled(self.finish(row, PendingStatus.FAILED, str(exc), history=True))
        return Ready(row, workflow, event, params)

    def _prepare_handed_over(
        self, row: PendingAction, workflow: Workflow, action: Action
    ) -> Ready | Settled:
        """A row stored for the workers as its change was handled (Executor._to_workers):
        judged then, against the record as the change left it (a deleted record too), it
        is not checked again; its templates are rendered again only for the outputs of the
        actions it waited behind (steps.<id>)."""
        stored = row.context["event"]
        event = Event.from_stored(row.entity, stored, stored["record"])
        params = row.context.get("params")
        if action.definition.templated and row.context.get("steps"):
            assert event.at is not None
            context = template_context(
                event,
                event.at,
                self.services.config.timezone,
                self.services.require_crm().related(),
                workflow,
                row.context.get("steps"),
            )
            try:
                params = render_tree(action.params, context)
            except TemplateFailure as exc:
                return Settled(self.finish(row, PendingStatus.FAILED, str(exc), history=True))
        return Ready(row, workflow, event, params)

    def held_back(self, ready: Ready, now: datetime) -> bool:
        """Whether a rate limit moved the row to later (not tried; the claim's count of
        attempts given back). Not held back counts as a send."""
        row = ready.row
        action = ready.workflow.actions[row.action_index]
        if action.digest is not None and row.action_type != DIGEST:
            return False  # collected, not sent: its digest's sending is what counts
        if (due := self._held_back(action.type, ready.params, now)) is None:
            return False
        attempts = max(0, ready.row.attempts - 1)
        self._require_state().update_pending(
            ready.row.id, status=PendingStatus.PENDING, attempts=attempts, due_at=due
        )
        return True

    def try_ready(self, ready: Ready, now: datetime) -> str | None:
        """One try of a prepared row, its outcome recorded under the row's key.

        It touches the CRM only through an in-database action's own write, so an action
        that waits on another host may be tried on a worker thread: its state writes go
        through that thread's own connection."""
        row, workflow, event = ready.row, ready.workflow, ready.event
        action = workflow.actions[row.action_index]
        outcome = self.attempt(
            workflow,
            action,
            event,
            ready.params,
            row.key,
            now,
            attempt=row.attempts,
            collect=row.action_type != DIGEST,
        )
        if _failed_for_now(outcome):
            return self._durably(lambda: self._retry_pending(row, outcome, now))
        if outcome.status == "failed":
            self._durably(lambda: self.finish(row, PendingStatus.FAILED, outcome.detail))
        else:  # done, or skipped because it was done before: the row's work is done
            self._durably(lambda: self.finish(row, PendingStatus.DONE, None, output=outcome.output))
        return f"{outcome.status}: {outcome.detail}"

    def held(self, workflow_id: str) -> bool:
        """Whether the workflow is held (its cap, or `crmflow pause WORKFLOW`). Read at
        most once a second: `crmflow resume` from another process takes effect then."""
        if self.caps is None:
            return False
        read, flags = self._held
        if time.monotonic() - read > 1.0:
            flags = self.caps.state.flags(HELD)
            self._held = (time.monotonic(), flags)
        return held_flag(workflow_id) in flags

    def forget_held(self) -> None:
        """Read the held workflows anew at the next check (each daemon tick)."""
        self._held = (0.0, {})

    def holds(self, run: ActionRun, key: str) -> bool:
        """Whether this action of a workflow run waits: its workflow is held, or this run
        is past the workflow's limit, which holds it from now on and tells the admins."""
        if self.caps is None:
            return False
        workflow = run.workflow
        if self.held(workflow.id):
            return True
        if run.rule.within_limit:
            return False  # counted for this run's first action already
        reason = self.caps.over(workflow, run.now)
        if reason is None:
            run.rule.within_limit = True
            return False
        self.caps.hold(workflow.id, reason)
        read, flags = self._held
        self._held = (read, {**flags, held_flag(workflow.id): reason})
        self._history("held", workflow.id, run.event, None, None, reason)
        self._tell_admins(run, key, reason)
        return True

    def _tell_admins(self, run: ActionRun, key: str, reason: str) -> None:
        admins = self.services.config.raw.get("admins")
        if not admins:
            return
        from crmflow.engine.effects.messages import notify

        params = {**admins_notice(run.workflow.id, reason), "to": admins}
        job = Job(
            self.services, run.workflow, run.action, run.event, params, f"{key}:held", run.now
        )
        try:
            outcome = notify(job)
        except CrmflowError as exc:  # told or not, the workflow stays held
            outcome = Outcome("failed", str(exc))
        self._history(
            outcome.status, run.workflow.id, run.event, None, None, f"admins: {outcome.detail}"
        )

    def give_back(self, rows: list[int], owner: str, due: datetime | None = None) -> None:
        """Rows `owner` claimed and did not try after all: pending again (at `due`, if
        given), each claim's count of attempts given back."""
        state = self._require_state()
        self._durably(lambda: state.release(rows, owner, due))

    def _facts_at_fire_time(
        self, row: PendingAction, workflow: Workflow, event: Event, now: datetime
    ) -> Facts:
        # What the change clauses said at trigger time holds only for the workflow as it
        # was then: a changed workflow's clauses are judged afresh.
        same_version = row.workflow_version == workflow.version
        kept = row.context.get("kept", {}) if same_version else {}
        crm = self.services.require_crm()
        return event.facts(
            now,
            self.services.config.timezone,
            crm.related(),
            kept={int(k): v for k, v in kept.items()},
        )

    def _retry_pending(self, row: PendingAction, outcome: Outcome, now: datetime) -> str | None:
        state = self._require_state()
        age = now.timestamp() - row.created_at
        decision = self.policy.decide(row.attempts, age, outcome, self.services.rng)
        if isinstance(decision, GiveUp):
            state.record_pending("failed", row, decision.detail)
            self.finish(row, PendingStatus.FAILED, decision.detail)
            return None
        due = now + timedelta(seconds=decision.pause)
        state.update_pending(
            row.id, status=PendingStatus.PENDING, due_at=due, last_error=outcome.detail
        )
        state.record_pending(
            "retried", row, f"attempt {row.attempts}: {outcome.detail}; next at {format_utc(due)}"
        )
        return f"retry at {format_utc(due)}: {outcome.detail}"

    def finish(
        self,
        row: PendingAction,
        status: PendingStatus,
        reason: str | None,
        *,
        history: bool = False,
        output: Any = None,
    ) -> str | None:
        """End a pending row (and, for one the run's later actions wait behind, let them
        go or cancel them, in the same transaction). A cancellation, or any end when
        `history` is asked, goes to the history; then the daemon's log says so too: the
        line is returned."""
        state = self._require_state()
        with state.unit():
            state.update_pending(row.id, status=status, last_error=reason)
            if row.context.get("leads"):
                self._after_lead(row, status, reason, output)
        if status != PendingStatus.CANCELLED and not history:
            return None
        state.record_pending(status, row, reason or "")
        return f"{status}: {reason}"

    # -- later ------------------------------------------------------------------------
    def _require_state(self) -> State:
        if self.state is None:
            raise ActionError("delayed actions need a state database (`state` in crmflow.yaml)")
        return self.state

    def _defer(self, run: ActionRun, key: str) -> dict[str, Any] | None:
        planned = run.planned
        state = self._require_state()
        if run.workflow.trigger.kind == "date" and not run.rule.rescheduled:
            # A date trigger keeps one fire time per record: a new save moves it.
            run.rule.rescheduled = True
            for old in state.find_pending(
                workflow=run.workflow.id, entity=run.event.entity, record_id=run.event.id
            ):
                state.update_pending(
                    old.id,
                    status=PendingStatus.CANCELLED,
                    last_error="rescheduled: the record changed",
                )
        due = planned.due
        if run.action.type == "wait":
            # The daemon acts on a wait when it times out; `until` is checked on each change.
            wait_for = run.action.wait_for
            due = (
                None
                if wait_for is None or due is None
                else wait_for.add_to(due, self.services.config.timezone)
            )
        if self.paused() and due is not None and due < run.now:
            due = run.now
        led = planned.after_wait or run.rule.led
        status = PendingStatus.WAITING if led else PendingStatus.PENDING
        stored = self._store(run, key, due, status)
        if run.action.type == "wait" and stored is not None:
            run.rule.wait_row = stored
        when = format_utc(due) if due else "when the wait ends"
        if stored is None:
            planned.status, planned.result = "skipped", f"already scheduled ({when})"
        else:
            planned.status = "scheduled"
            planned.result = (
                f"waiting until {when}"
                if run.action.type == "wait"
                else f"due {when}" + (" (paused)" if self.paused() else "")
            )
        self._history(
            "scheduled" if stored is not None else "skipped",
            run.workflow.id,
            run.event,
            run.action,
            key,
            planned.result,
        )
        return None

    def _store(
        self,
        run: ActionRun,
        key: str,
        due: datetime | None,
        status: PendingStatus,
        *,
        attempts: int = 0,
        last_error: str | None = None,
        whole_run: bool = False,
        leads: bool = False,
        now: bool = False,
    ) -> int | None:
        """Store the action for later; with `whole_run`, the run it begins (a queued run:
        its row stands for all of its actions, planned afresh when its turn comes)."""
        state = self._require_state()
        event = run.event
        context = {
            "event": event.to_stored(event.at or run.now),
            "kept": {str(k): v for k, v in (run.rule.kept or {}).items()},
            "steps": run.steps,
            "params": None if whole_run else run.params,
            "run": self.run_of(run),
        }
        if whole_run:
            # Planned afresh at its turn, it must name its change as now: same keys.
            context["change"] = _change(run)
        if now:
            context["now"] = True  # judged as its change was handled: not checked again
        if leads:
            # Later actions of the run wait behind it (Executor._after_lead).
            context["leads"] = True
            context["step"] = run.action.id
        stored = state.schedule(
            key=key,
            workflow=run.workflow.id,
            workflow_version=run.workflow.version,
            entity=event.entity,
            record_id=event.id,
            action_index=WHOLE_RUN if whole_run else run.action.index,
            action_type=QUEUED_RUN if whole_run else run.action.type,
            due=due,
            context=context,
            status=status,
            wait_id=run.rule.wait_row,
        )
        if stored is not None and (attempts or last_error):
            state.update_pending(stored, attempts=attempts, last_error=last_error)
        return stored

    # -- history ----------------------------------------------------------------------
    def _history(
        self,
        outcome: str,
        workflow: str,
        event: Event,
        action: Action | None,
        key: str | None,
        detail: str,
        output: dict[str, Any] | None = None,
    ) -> None:
        if self.state is None:
            return
        self.state.record(
            outcome,
            workflow=workflow,
            entity=event.entity,
            record_id=event.id,
            action_index=action.index if action else None,
            action_type=action.type if action else None,
            key=key,
            detail=detail,
            output=output,
        )

    def unplanned(self, workflow: Workflow, action: Action, event: Event, reason: str) -> None:
        """An action that could not be planned (its template or due time fails): failed,
        in the history and in the count that makes `eval` exit 3."""
        self.failed += 1
        self._history("failed", workflow.id, event, action, None, reason)

    def record_plan(self, plan: Plan) -> None:
        """Each workflow's decision on the plan's event (fired or not, and why) into the
        history; a tick meant for one schedule workflow is recorded for that one only."""
        event = plan.event
        for rule in plan.rules:
            if rule.workflow is None or rule.workflow.entity != event.entity:
                continue
            if event.rule is not None and rule.rule != event.rule:
                continue
            self.record_decision(rule, event)

    def record_decision(self, rule: RulePlan, event: Event) -> None:
        """The workflow-level decision (fired or not, and why) into the history."""
        if self.state is None:
            return
        self.state.record(
            "fired" if rule.matched else "not_fired",
            workflow=rule.rule,
            entity=event.entity,
            record_id=event.id,
            detail="" if rule.matched else (rule.reason or ""),
        )
