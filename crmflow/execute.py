"""Carrying plans out: immediate actions now, later ones into the state database.

The Executor is the evaluator's performer when actions are real. It retries transient
failures (connection errors, HTTP 5xx/408/429, SMTP 4xx) with exponential backoff and
jitter, records every outcome in the history, and stores delayed actions and everything
after a `wait` as pending actions for the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crmflow import durations
from crmflow.effects.base import Job, Outcome, Services, Transient
from crmflow.errors import ActionError, CrmflowError
from crmflow.evaluate import ActionRun, RulePlan
from crmflow.keys import action_key, record_version
from crmflow.state import State
from crmflow.templates import TemplateFailure
from crmflow.timeutil import format_utc


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


class Executor:
    """Performs actions for real (see evaluate.Performer)."""

    def __init__(
        self,
        services: Services,
        state: State | None,
        *,
        retry: RetryPolicy | None = None,
        inline_limit: float = 60.0,
    ) -> None:
        self.services = services
        self.state = state
        policy = retry or RetryPolicy.from_config(services.config.raw.get("retry"))
        # Retries here block the caller (a shell, a CI job): at most `inline_limit` of waiting.
        self.retry = RetryPolicy(
            policy.max_attempts,
            policy.base_delay,
            policy.max_delay,
            min(policy.max_age, inline_limit),
        )
        self.failed = 0
        self._broken: set[int] = set()  # plans whose earlier action failed
        self._wait_ids: dict[int, int] = {}  # plan -> the pending row of its wait

    def perform(self, run: ActionRun) -> dict[str, Any] | None:
        planned = run.planned
        key = self.key(run)
        if id(run.rule) in self._broken:
            planned.status, planned.result = "skipped", "an earlier action of this workflow failed"
            self._history("skipped", run, key, planned.result)
            return None
        if (
            run.action.type == "wait"
            or planned.after_wait
            or (planned.due is not None and planned.due > run.now)
        ):
            return self._defer(run, key)
        outcome = self.run_now(run, key)
        planned.status, planned.result = outcome.status, outcome.detail
        if outcome.status == "failed":
            self.failed += 1
            self._broken.add(id(run.rule))
        return outcome.output

    def key(self, run: ActionRun) -> str:
        event = run.event
        # The same change seen again gives the same key. An event names its moment with
        # `at`; without it, its content is the change (a tick's moment is always part).
        moment = event.at or (run.now if event.event == "tick" else None)
        version = event.version or record_version(
            event.record, event.event, event.previous, format_utc(moment) if moment else None
        )
        return action_key(run.workflow.id, event.entity, event.id, version, run.action.index)

    def run_now(self, run: ActionRun, key: str) -> Outcome:
        from crmflow.effects import effect_for

        if self.state is not None and (done := self.state.done_at(key)) is not None:
            outcome = Outcome("skipped", f"already done at {format_utc(done)}")
            self._history("skipped", run, key, outcome.detail)
            return outcome
        job = Job(self.services, run.workflow, run.action, run.event, run.params, key, run.now)
        effect = effect_for(run.action.type)
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            try:
                outcome = effect(job)
            except Transient as exc:
                if attempt >= self.retry.max_attempts:
                    outcome = Outcome(
                        "failed", f"{exc} (gave up after {attempt} attempts)", transient=True
                    )
                else:
                    pause = self.retry.delay(attempt, self.services.rng, exc.retry_after)
                    if waited + pause > self.retry.max_age:
                        outcome = Outcome(
                            "failed", f"{exc} (retrying would pass retry.max_age)", transient=True
                        )
                    else:
                        self._history(
                            "retried", run, key, f"attempt {attempt}: {exc}; next in {pause:.2f}s"
                        )
                        self.services.sleep(pause)
                        waited += pause
                        continue
            except (ActionError, TemplateFailure) as exc:
                outcome = Outcome("failed", str(exc))
            except CrmflowError as exc:
                outcome = Outcome("failed", str(exc))
            self._history(outcome.status, run, key, outcome.detail)
            return outcome

    def _defer(self, run: ActionRun, key: str) -> dict[str, Any] | None:
        planned = run.planned
        if self.state is None:
            raise ActionError("delayed actions need a state database (`state` in crmflow.yaml)")
        event = run.event
        context = {
            "event": {
                "entity": event.entity,
                "event": event.event,
                "record": event.record,
                "previous": event.previous,
                "actor": event.actor,
                "at": format_utc(event.at or run.now),
            },
            "kept": {str(k): v for k, v in (run.rule.kept or {}).items()},
            "steps": run.steps,
            "params": run.params,
        }
        wait_id = self._wait_ids.get(id(run.rule))
        due = planned.due
        if run.action.type == "wait":
            # The daemon acts on a wait when it times out; `until` is checked on each change.
            wait_for = run.action.wait_for
            due = (
                None
                if wait_for is None or due is None
                else wait_for.add_to(due, self.services.config.timezone)
            )
        status = "waiting" if planned.after_wait else "pending"
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
            wait_id=wait_id,
        )
        if run.action.type == "wait" and stored is not None:
            self._wait_ids[id(run.rule)] = stored
        when = format_utc(due) if due else "when the wait ends"
        if stored is None:
            planned.status, planned.result = "skipped", f"already scheduled ({when})"
        else:
            planned.status = "scheduled"
            planned.result = f"waiting until {when}" if run.action.type == "wait" else f"due {when}"
        self._history("scheduled" if stored is not None else "skipped", run, key, planned.result)
        return None

    def _history(self, outcome: str, run: ActionRun, key: str, detail: str) -> None:
        if self.state is None:
            return
        self.state.record(
            outcome,
            workflow=run.workflow.id,
            entity=run.event.entity,
            record_id=run.event.id,
            action_index=run.action.index,
            action_type=run.action.type,
            key=key,
            detail=detail,
        )

    def record_decision(self, rule: RulePlan, run_event: Any) -> None:
        """The workflow-level decision (fired or not, and why) into the history."""
        if self.state is None:
            return
        self.state.record(
            "fired" if rule.matched else "not_fired",
            workflow=rule.rule,
            entity=run_event.entity,
            record_id=run_event.id,
            detail="" if rule.matched else (rule.reason or ""),
        )
