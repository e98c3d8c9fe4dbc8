"""Carrying plans out: immediate actions now, later ones into the state database.

The Executor is the evaluator's performer when actions are real. In `eval` it retries
transient failures (connection errors, HTTP 5xx/408/429, SMTP 4xx) inline with
exponential backoff and jitter; in the daemon a retry becomes a pending row due later.
Every outcome goes to the history; delayed actions and everything after a `wait` are
stored as pending actions; CRM writes are noted so the changes they cause are known as
crmflow's own (chains).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crmflow import durations
from crmflow.effects.base import Job, Outcome, Services, Transient
from crmflow.errors import ActionError, CrmflowError
from crmflow.evaluate import ActionRun, RulePlan
from crmflow.events import Event
from crmflow.keys import action_key, record_version
from crmflow.state import State
from crmflow.templates import TemplateFailure
from crmflow.timeutil import format_utc
from crmflow.workflow import Action, Workflow


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    max_age: float = 3600.0

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None) -> RetryPolicy:
        raw = raw or {}
        return cls(
            max_attempts=int(raw.get("max_attempts", 5)),
            base_delay=durations.parse(raw.get("base_delay", "1s")).seconds,
            max_delay=durations.parse(raw.get("max_delay", "5m")).seconds,
            max_age=durations.parse(raw.get("max_age", "1h")).approx_seconds(),
        )

    def delay(self, attempt: int, rng: Any, retry_after: float | None = None) -> float:
        """Seconds before attempt `attempt + 1`: exponential, with jitter, or as asked."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        exponential = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return exponential * (0.5 + rng.random() * 0.5)


def event_context(event: Event, at: datetime) -> dict[str, Any]:
    """An event as stored with a pending action, to rebuild it at fire time."""
    return {
        "entity": event.entity,
        "event": event.event,
        "record": event.record,
        "previous": event.previous,
        "actor": event.actor,
        "at": format_utc(at),
        "version": event.version,
        "chain": event.chain,
    }


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
    ) -> None:
        self.services = services
        self.state = state
        policy = retry or RetryPolicy.from_config(services.config.raw.get("retry"))
        self.policy = policy
        # Inline retries block the caller (a shell, a CI job): at most `inline_limit` waiting.
        self.retry = RetryPolicy(
            policy.max_attempts,
            policy.base_delay,
            policy.max_delay,
            min(policy.max_age, inline_limit),
        )
        self.inline_retries = inline_retries
        from crmflow.limits import RateLimits

        self.limits = RateLimits(services.config.raw)
        self.paused = paused
        self.failed = 0
        self._broken: set[int] = set()  # plans whose earlier action failed
        self._wait_ids: dict[int, int] = {}  # plan -> the pending row of its wait
        self._rescheduled: set[int] = set()  # date-trigger plans whose old rows were cancelled

    # -- the performer ----------------------------------------------------------------
    def perform(self, run: ActionRun) -> dict[str, Any] | None:
        planned = run.planned
        key = self.key(run)
        if id(run.rule) in self._broken:
            planned.status, planned.result = "skipped", "an earlier action of this workflow failed"
            self._history("skipped", run.workflow.id, run.event, run.action, key, planned.result)
            return None
        later = planned.due is not None and planned.due > run.now
        if run.action.type == "wait" or planned.after_wait or later or self.paused():
            return self._defer(run, key)
        if self.inline_retries:
            outcome = self.run_now(run, key)
        elif (pause := self.limits.wait(run.action.type, run.params, run.now)) > 0:
            due = run.now + timedelta(seconds=pause)
            self._store(run, key, due, "pending")
            planned.status, planned.result = "scheduled", f"rate limit: due {format_utc(due)}"
            return None
        else:
            outcome = self.attempt(run.workflow, run.action, run.event, run.params, key, run.now)
            if outcome.transient and outcome.status == "failed":
                return self._retry_later(run, key, outcome)
        planned.status, planned.result = outcome.status, outcome.detail
        if outcome.status == "failed":
            self.failed += 1
            self._broken.add(id(run.rule))
            if not self.inline_retries and self.state is not None:
                # Visible and retryable by hand (`crmflow pending retry ID`).
                self._store(run, key, run.now, "failed", last_error=outcome.detail)
        return outcome.output

    def key(self, run: ActionRun) -> str:
        event = run.event
        # The same change seen again gives the same key. An event names its moment with
        # `at`; without it, its content is the change (a tick's moment is always part).
        moment = event.at or (run.now if event.event == "tick" else None)
        version = event.version or record_version(
            event.record, event.event, event.previous, format_utc(moment) if moment else None
        )
        # The kind is part of it: a deletion of an unchanged row is another change.
        return action_key(
            run.workflow.id, event.entity, event.id, f"{event.event}:{version}", run.action.index
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
    ) -> Outcome:
        """One try of the action; the outcome is recorded (a transient failure as such)."""
        if self.state is not None and (done := self.state.done_at(key)) is not None:
            outcome = Outcome("skipped", f"already done at {format_utc(done)}")
            self._history("skipped", workflow.id, event, action, key, outcome.detail)
            return outcome
        from crmflow.effects import effect_for

        job = Job(self.services, workflow, action, event, params, key, now)
        try:
            outcome = effect_for(action.type)(job)
        except Transient as exc:
            return Outcome("failed", str(exc), transient=True, retry_after=exc.retry_after)
        except (ActionError, TemplateFailure, CrmflowError) as exc:
            outcome = Outcome("failed", str(exc))
        self._history(outcome.status, workflow.id, event, action, key, outcome.detail)
        if outcome.status == "done" and self.state is not None and outcome.touched:
            chain = [*(event.chain or []), [workflow.id, event.entity, event.id]]
            for entity, record_id in outcome.touched:
                self.state.note_write(entity, record_id, key, chain)
        return outcome

    def run_now(self, run: ActionRun, key: str) -> Outcome:
        """The action now, retrying transient failures inline (eval)."""
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            outcome = self.attempt(
                run.workflow, run.action, run.event, run.params, key, run.now, attempt=attempt
            )
            if not (outcome.transient and outcome.status == "failed"):
                return outcome
            if attempt >= self.retry.max_attempts:
                detail = f"{outcome.detail} (gave up after {attempt} attempts)"
            else:
                pause = self.retry.delay(attempt, self.services.rng, outcome.retry_after)
                if waited + pause <= self.retry.max_age:
                    self._history(
                        "retried",
                        run.workflow.id,
                        run.event,
                        run.action,
                        key,
                        f"attempt {attempt}: {outcome.detail}; next in {pause:.2f}s",
                    )
                    self.services.sleep(pause)
                    waited += pause
                    continue
                detail = f"{outcome.detail} (retrying would pass retry.max_age)"
            final = Outcome("failed", detail, transient=True)
            self._history("failed", run.workflow.id, run.event, run.action, key, detail)
            return final

    # -- later ------------------------------------------------------------------------
    def _retry_later(self, run: ActionRun, key: str, outcome: Outcome) -> dict[str, Any] | None:
        pause = self.policy.delay(1, self.services.rng, outcome.retry_after)
        due = run.now + timedelta(seconds=pause)
        self._store(run, key, due, "pending", attempts=1, last_error=outcome.detail)
        run.planned.status = "scheduled"
        run.planned.result = f"{outcome.detail}; retry at {format_utc(due)}"
        self._history("retried", run.workflow.id, run.event, run.action, key, run.planned.result)
        return None

    def _defer(self, run: ActionRun, key: str) -> dict[str, Any] | None:
        planned = run.planned
        if self.state is None:
            raise ActionError("delayed actions need a state database (`state` in crmflow.yaml)")
        if run.workflow.trigger.kind == "date" and id(run.rule) not in self._rescheduled:
            # A date trigger keeps one fire time per record: a new save moves it.
            self._rescheduled.add(id(run.rule))
            for old in self.state.find_pending(
                workflow=run.workflow.id, entity=run.event.entity, record_id=run.event.id
            ):
                self.state.update_pending(
                    old.id, status="cancelled", last_error="rescheduled: the record changed"
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
        status = "waiting" if planned.after_wait else "pending"
        stored = self._store(run, key, due, status)
        if run.action.type == "wait" and stored is not None:
            self._wait_ids[id(run.rule)] = stored
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
        status: str,
        *,
        attempts: int = 0,
        last_error: str | None = None,
    ) -> int | None:
        assert self.state is not None
        event = run.event
        context = {
            "event": event_context(event, event.at or run.now),
            "kept": {str(k): v for k, v in (run.rule.kept or {}).items()},
            "steps": run.steps,
            "params": run.params,
        }
        stored = self.state.schedule(
            key=key,
            workflow=run.workflow.id,
            workflow_version=run.workflow.version,
            entity=event.entity,
            record_id=event.id,
            action_index=run.action.index,
            action_type=run.action.type,
            due=due,
            context=context,
            status=status,
            wait_id=self._wait_ids.get(id(run.rule)),
        )
        if stored is not None and (attempts or last_error):
            self.state.update_pending(stored, attempts=attempts, last_error=last_error)
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
        )

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
