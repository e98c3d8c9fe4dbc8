"""The evaluator: event + workflows + now -> plan. Pure: it reads, it never acts.

Everything time-dependent takes `now` as an argument, and generated codes come from the
random generator handed in, so the same input gives the same plan.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any, Protocol

from crmflow.engine.events import Event, parse_event
from crmflow.engine.matcher import (
    NO_MATCH,
    Decide,
    MakeFacts,
    Match,
    Wording,
    compile_bucket,
    compile_decisions,
)
from crmflow.rules.conditions import Facts, FieldClause, Related, Trace
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.templates import Record, TemplateFailure, iter_templates, render_tree
from crmflow.rules.workflow import Action, Workflow
from crmflow.timeutil import DateOutOfRange, format_utc
from crmflow.values import same

# Plans of workflows that depend on the moment alone, kept as worded (constant memory).
PLANS_KEPT = 4096
# Due times repeat (every action of a stream at one `now`): each is worded once.
_utc_text = lru_cache(maxsize=4096)(format_utc)


@dataclass(slots=True)
class PlannedAction:
    type: str
    index: int
    due: datetime | None
    id: str | None = None
    params: Any = None
    error: str | None = None
    skipped: str | None = None
    after_wait: bool = False
    output: dict[str, Any] | None = None
    status: str | None = None  # when carried out: done, failed, skipped, scheduled
    result: str | None = None  # what happened, in words
    key: str | None = None  # when carried out: its idempotency key (not in the plan's JSON)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "due": _utc_text(self.due) if self.due else None,
        }
        if self.error is not None:
            data["error"] = self.error
        elif self.skipped is not None:
            data["skipped"] = self.skipped
        else:
            data["params"] = self.params
        if self.after_wait:
            data["after_wait"] = True
        if self.status is not None:
            data["status"] = self.status
            data["result"] = self.result
        return data


@dataclass(slots=True)
class RulePlan:
    rule: str
    matched: bool
    reason: str | None = None
    actions: list[PlannedAction] = field(default_factory=list)
    trace: Trace | None = None
    workflow: Workflow | None = None
    # What the change clauses said at trigger time, for delayed re-checks.
    kept: dict[int, bool] | None = None
    # When the actions count from: the event's time, or a date trigger's fire time.
    start: datetime | None = None
    # The gate (the daemon's loop guard) stopped it; `reason` says why.
    gated: bool = False
    # What carrying the plan out has learnt so far (the executor's bookkeeping). It lives
    # and dies with the plan, so no later plan can inherit it.
    failed: bool = False  # an action failed: the workflow's later actions are skipped
    wait_row: int | None = None  # the pending row of its latest wait, which followers name
    # An action of this run went to the daemon's workers (Executor.hand_over): every
    # later one waits behind it (wait_row names the latest such row) for its outcome.
    led: bool = False
    rescheduled: bool = False  # a date trigger's older pending rows were cancelled
    within_limit: bool = False  # its workflow's limit: was counted for this run: not reached
    mode_checked: bool = False  # its workflow's mode was asked about this run (modes.py)
    set_aside: str | None = None  # why the mode dropped or queued this run
    set_aside_as: str = ""  # "dropped" or "queued"

    def to_json(self) -> dict[str, Any]:
        if self.matched:
            return {
                "rule": self.rule,
                "matched": True,
                "actions": [a.to_json() for a in self.actions],
            }
        return {"rule": self.rule, "matched": False, "reason": self.reason}


@dataclass(slots=True)
class Plan:
    event: Event
    now: datetime
    rules: list[RulePlan]

    def to_json(self) -> dict[str, Any]:
        return {
            "event": {"entity": self.event.entity, "event": self.event.event, "id": self.event.id},
            "rules": [r.to_json() for r in self.rules],
        }

    @property
    def matched(self) -> list[RulePlan]:
        return [r for r in self.rules if r.matched]


# A workflow's part of a plan: planned in full, or (id, reason) for one that does not fire
# where the caller asked for no more (`Evaluator.evaluate_brief`).
Decision = RulePlan | tuple[str, str]


class CooldownBook(Protocol):
    """Where cooldowns are kept: in memory for a stream, in the state database for the daemon."""

    def last(self, rule: str, entity: str, record_id: Any) -> datetime | None: ...

    def fired(self, rule: str, entity: str, record_id: Any, at: datetime) -> None: ...


class Cooldowns:
    """When each workflow last fired for each record (in memory; the daemon persists it)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, Any], datetime] = {}

    def last(self, rule: str, entity: str, record_id: Any) -> datetime | None:
        return self._last.get((rule, entity, _hashable(record_id)))

    def fired(self, rule: str, entity: str, record_id: Any, at: datetime) -> None:
        self._last[(rule, entity, _hashable(record_id))] = at


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, type(None))) else repr(value)


def changes_of(record: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, list[Any]]:
    if previous is None:
        return {}
    keys = list(record) + [k for k in previous if k not in record]
    return {
        k: [previous.get(k), record.get(k)]
        for k in keys
        if not same(previous.get(k), record.get(k))
    }


@dataclass(slots=True)
class ActionRun:
    """One action about to be carried out (or planned), with what it needs to know."""

    workflow: Workflow
    action: Action
    planned: PlannedAction
    params: Any
    event: Event
    facts: Facts
    rule: RulePlan
    steps: dict[str, Any]
    now: datetime


class Performer(Protocol):
    """What happens to an action once planned: a dry run records, an executor acts."""

    def perform(self, run: ActionRun) -> dict[str, Any] | None:
        """Carry the action out (or not); return its output for `steps.<id>`."""

    def unplanned(self, workflow: Workflow, action: Action, event: Event, reason: str) -> None:
        """An action that could not even be planned: a failure like any other."""


class DryRun:
    """Touches nothing: outputs are what a dry run can know (codes, null ids)."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def perform(self, run: ActionRun) -> dict[str, Any] | None:
        return self.output(run.action, run.params)

    def unplanned(self, workflow: Workflow, action: Action, event: Event, reason: str) -> None:
        pass  # the plan shows the error: nothing else to do in a dry run

    def output(self, action: Action, params: Any) -> dict[str, Any] | None:
        """What the action would output, from its rendered parameters."""
        if action.type == "wait":
            return None
        return action.definition.dry_output(params, self.rng)


def template_context(
    event: Event,
    at: datetime,
    tz: tzinfo,
    related: Related | None,
    workflow: Workflow | None = None,
    steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What templates see for an event (SPEC: record, the entity's name, previous, ...)."""
    record = Record(event.record, event.entity, related)
    previous = Record(event.previous, event.entity) if event.previous is not None else None
    context = {
        "record": record,
        event.entity: record,
        "previous": previous,
        "changes": Record(changes_of(event.record, event.previous)),
        "actor": event.actor,
        "now": at.astimezone(tz),
    }
    if workflow is not None:
        context["rule"] = {"id": workflow.id, "name": workflow.title}
        context["steps"] = Record(steps or {})
    return context


class Evaluator:
    """Evaluates events against a rule set; one per stream (it holds cooldowns and codes)."""

    def __init__(
        self,
        rules: RuleSet,
        tz: tzinfo,
        *,
        seed: int | None = None,
        cooldowns: CooldownBook | None = None,
        related: Callable[[], Related] | None = None,
        performer: Performer | None = None,
        explain: bool = False,
        gate: Callable[[Workflow, Event], str | None] | None = None,
    ) -> None:
        self.rules = rules
        # A last word on a matched workflow (the daemon's loop protection): a reason not
        # to fire, or None.
        self.gate = gate
        self.tz = tz
        # Bucket matchers compiled for this time zone, built on first use (most never are).
        self._matchers: dict[tuple[str, str], Match] = {}
        self._deciders: dict[tuple[str, str], Decide] = {}
        # The same, saying what `_words` makes of each reason (one wording at a time).
        self._worded: dict[tuple[str, str], Decide] = {}
        self._words: Wording | None = None
        # Workflows whose plan depends on the moment alone (`_fixed`), and those plans
        # as `_words` said them, by (workflow, moment).
        self._fixed_plans: dict[str, bool] = {}
        self._worded_plans: dict[tuple[str, datetime], Any] = {}
        # Per workflow, its change clauses (kept at trigger time for delayed re-checks).
        self._changes: dict[str, tuple[FieldClause, ...]] = {}
        # Per action (by id: actions live as long as the rule set), whether it renders.
        self._templates: dict[int, bool] = {}
        self.rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self.cooldowns: CooldownBook = cooldowns if cooldowns is not None else Cooldowns()
        self.related = related
        self.performer: Performer = performer or DryRun(self.rng)
        self._dry = self.performer if type(self.performer) is DryRun else None
        self.explain = explain
        # Bound once: the matcher is handed it for every event.
        self._make = self._facts
        self._make_raw = self._facts_raw
        self._stateless = not rules.needs_state

    def _facts(self, event: Event, at: datetime) -> Facts:
        related = None if self.related is None else self.related()
        return event.facts(at, self.tz, related)

    def evaluate(self, event: Event, now: datetime, *, only: Container[str] | None = None) -> Plan:
        """The plan for `event`: each workflow's decision and the actions of those that fire.

        `only` limits it to the named workflows (the others are left out of the plan).
        """
        at = event.at or now
        return Plan(event, at, self._decide(event, at, now, only, brief=False))  # type: ignore[arg-type]

    def evaluate_brief(
        self, event: Event, now: datetime, words: Wording | None = None
    ) -> tuple[datetime, list[Any]]:
        """What `evaluate` plans, each workflow that does not fire as (id, reason) only.

        For writers that need no more of those (a dry run's JSON): no RulePlan is built
        for them. With `words`, such a workflow is what `words` makes of (id, reason),
        worded where the reason is found. Returns the moment the event was judged at, and
        the decisions.
        """
        at = event.at or now
        return at, self._decide(event, at, now, None, brief=True, words=words)

    def _decide(
        self,
        event: Event,
        at: datetime,
        now: datetime,
        only: Container[str] | None,
        *,
        brief: bool,
        words: Wording | None = None,
    ) -> list[Any]:
        entries = self.rules.entries(event.entity, event.event)
        if not entries:
            return []
        facts: Facts | None = None

        def make(_event: Event, _at: datetime) -> Facts:
            # One Facts per event, made at first need: a clause the generated code calls
            # and the workflows planned below see the same ones.
            nonlocal facts
            if facts is None:
                facts = self._facts(event, at)
            return facts

        # Which workflows match and why the others do not, from the bucket's compiled
        # decisions. `--explain` wants every trace: no shortcut.
        if self.explain:
            decided = [
                None if e.reacts else _worded(words, e.workflow.id, e.static_reason)
                for e in entries
            ]
        else:
            decided = self.decisions(event.entity, event.event, words)(event, at, make)
        tick_for = event.rule if event.event == "tick" else None
        if brief and only is None and tick_for is None:
            # The common case: the decisions are the plan, but for the workflows that fire.
            if None in decided:
                context: list[dict[str, Any]] = []
                for n, said in enumerate(decided):
                    if said is None:
                        workflow = entries[n].workflow
                        if words is not None and self._fixed(workflow):
                            decided[n] = self._worded_plan(workflow, event, at, now, make, words)
                        else:
                            decided[n] = self._plan(workflow, event, at, now, make, context)
            return decided  # type: ignore[return-value]
        plans: list[Decision] = []
        context = []
        for entry, said in zip(entries, decided, strict=True):
            workflow = entry.workflow
            if only is not None and workflow.id not in only:
                continue
            if entry.reacts and tick_for is not None and tick_for != workflow.id:
                said = _worded(words, workflow.id, f"tick for {tick_for}")
            if said is None:
                plans.append(self._plan(workflow, event, at, now, make, context))
            elif brief:
                plans.append(said)
            else:
                plans.append(RulePlan(workflow.id, False, said[1], workflow=workflow))
        return plans

    def _plan(
        self,
        workflow: Workflow,
        event: Event,
        at: datetime,
        now: datetime,
        make: MakeFacts,
        context: list[dict[str, Any]],
    ) -> RulePlan:
        """The workflow judged in full, and its actions planned when it fires.

        `context` holds the templates' context once a workflow of the event made it.
        """
        facts = make(event, at)
        # Without --explain a workflow reaching here passed its compiled decision, unless
        # its match depends on state: its trigger and conditions need no second check.
        judged = not self.explain and not workflow.depends_on_state
        plan = self._match(workflow, facts, event, at, judged=judged)
        if plan.matched:
            # Recorded here, not in _match: `matching` judges without firing anything.
            if workflow.cooldown is not None:
                self.cooldowns.fired(workflow.id, event.entity, event.id, at)

            def shared() -> dict[str, Any]:
                if not context:
                    context.append(self._context(event, at, facts.related))
                return context[0]

            self._plan_actions(workflow, plan, event, facts, shared, plan.start or at, now)
        return plan

    def _fixed(self, workflow: Workflow) -> bool:
        """Whether the workflow's dry-run plan, once it fires, depends on the moment alone.

        So it is when nothing of the event reaches it (no templates, no action `if`), it
        keeps no state (no cooldown, no date trigger, no gate) and planning it draws no
        random numbers and calls no other package (built-in actions but generate_code).
        """
        found = self._fixed_plans.get(workflow.id)
        if found is None:
            found = self._fixed_plans[workflow.id] = (
                self._dry is not None
                and self.gate is None
                and not self.explain
                and not workflow.depends_on_state
                and workflow.cooldown is None
                and all(
                    a.condition is None
                    and a.type != "generate_code"
                    and a.definition.run is None
                    and (a.type == "wait" or not self._templated(a))
                    for a in workflow.actions
                )
            )
        return found

    def _worded_plan(
        self,
        workflow: Workflow,
        event: Event,
        at: datetime,
        now: datetime,
        make: MakeFacts,
        words: Wording,
    ) -> Any:
        """What `words` makes of the plan of a `_fixed` workflow, planned once per moment."""
        key = (workflow.id, at)
        said = self._worded_plans.get(key)
        if said is None:
            said = words.planned(self._plan(workflow, event, at, now, make, []))
            if len(self._worded_plans) >= PLANS_KEPT:
                self._worded_plans.clear()
            self._worded_plans[key] = said
        return said

    def decisions(self, entity: str, event: str, words: Wording | None = None) -> Decide:
        """Every workflow of (entity, event) decided together (crmflow.engine.matcher)."""
        if words is None:
            kept = self._deciders
        else:
            if words is not self._words:
                self._worded.clear()
                self._worded_plans.clear()
                self._words = words
            kept = self._worded
        decide = kept.get((entity, event))
        if decide is None:
            decide = compile_decisions(self.rules.entries(entity, event), self.tz, event, words)
            kept[entity, event] = decide
        return decide

    def matcher(self, entity: str, event: str) -> Match:
        """The workflows taking (entity, event), compiled together (crmflow.engine.matcher)."""
        match = self._matchers.get((entity, event))
        if match is None:
            reacting = [e.workflow for e in self.rules.entries(entity, event) if e.reacts]
            match = compile_bucket(reacting, self.tz, event)
            self._matchers[entity, event] = match
        return match

    def matching(self, event: Event, now: datetime) -> list[str]:
        """Ids of the workflows the event triggers, without planning their actions.

        The fast path: the workflows taking this (entity, event) are checked together,
        sharing field reads and dispatching on equality (crmflow.engine.matcher). It
        records nothing: no cooldown starts.
        """
        # One dictionary lookup before anything else: many events take no workflow.
        match = self._matchers.get((event.entity, event.event)) or self.matcher(
            event.entity, event.event
        )
        if match is NO_MATCH:
            return []
        at = event.at or now
        matched = match(event.record, event.previous, event, at, self._make)
        if self._stateless:
            return matched
        return self._kept(matched, event, at)

    def matching_raw(self, data: Mapping[str, Any], now: datetime) -> list[str]:
        """`matching` for an event as decoded from JSON, without making an `Event` of it.

        `data` is trusted, as `parse_event` would accept it (`entity`, `event`, `record`,
        optionally `previous`, `actor`, `chain`, `at` as a datetime or an ISO string, the
        string read by `parse_event`). For callers that hold mappings: no Event per call.
        """
        key = (data["entity"], data["event"])
        match = self._matchers.get(key) or self.matcher(*key)
        if match is NO_MATCH:
            return []
        if self._stateless:
            at = data.get("at")
            if at is None:
                return match(data["record"], data.get("previous"), data, now, self._make_raw)
            if type(at) is datetime:
                return match(data["record"], data.get("previous"), data, at, self._make_raw)
        return self.matching(_event_of(data), now)

    def _facts_raw(self, data: Mapping[str, Any], at: datetime) -> Facts:
        return self._facts(_event_of(data), at)

    def _kept(self, matched: list[str], event: Event, at: datetime) -> list[str]:
        """The matched workflows without those a date trigger or a cooldown holds back."""
        # Date triggers and cooldowns: the matcher passed them on unjudged.
        facts = None
        kept = []
        for rule in matched:
            workflow = self.rules.by_id[rule]
            if workflow.depends_on_state:
                facts = facts or self._facts(event, at)
                if not self._match(workflow, facts, event, at).matched:
                    continue
            kept.append(rule)
        return kept

    def _match(
        self, workflow: Workflow, facts: Facts, event: Event, at: datetime, *, judged: bool = False
    ) -> RulePlan:
        """The workflow judged against the event; `judged`: its trigger and conditions hold."""
        if judged:
            return self._fires(workflow, facts, event, None, None)
        trigger = workflow.trigger
        reason = trigger.reject(facts)
        if reason is not None:
            return RulePlan(workflow.id, False, reason, workflow=workflow)
        start = None
        if trigger.kind == "date":
            fire = trigger.fire_time(facts, self.tz)
            if isinstance(fire, str):
                return RulePlan(workflow.id, False, fire, workflow=workflow)
            if fire <= at:
                return RulePlan(
                    workflow.id,
                    False,
                    f"trigger {trigger.describe}: {format_utc(fire)} is already past",
                    workflow=workflow,
                )
            start = fire
        if workflow.cooldown is not None:
            last = self.cooldowns.last(workflow.id, event.entity, event.id)
            if last is not None:
                try:
                    until = workflow.cooldown.add_to(last, self.tz)
                except DateOutOfRange:
                    # A cooldown that ends past year 9999 never ends: it holds.
                    return RulePlan(
                        workflow.id,
                        False,
                        f"cooldown {workflow.cooldown}: fired {format_utc(last)}, no end",
                        workflow=workflow,
                    )
                if at < until:
                    return RulePlan(
                        workflow.id,
                        False,
                        f"cooldown {workflow.cooldown}: fired {format_utc(last)}, "
                        f"not again before {format_utc(until)}",
                        workflow=workflow,
                    )
        condition = workflow.condition
        if self.explain:
            trace = condition.explain(facts)
            if not trace.ok:
                return RulePlan(workflow.id, False, trace.reason(), trace=trace, workflow=workflow)
        elif not condition.check(facts):
            return RulePlan(workflow.id, False, condition.reason(facts), workflow=workflow)
        else:
            trace = None
        return self._fires(workflow, facts, event, trace, start)

    def _fires(
        self,
        workflow: Workflow,
        facts: Facts,
        event: Event,
        trace: Trace | None,
        start: datetime | None,
    ) -> RulePlan:
        """The plan of a workflow whose trigger and conditions hold, unless the gate stops it."""
        changes = self._changes.get(workflow.id)
        if changes is None:
            changes = self._changes[workflow.id] = tuple(workflow.condition.change_clauses())
        kept = {c.uid: c.check(facts) for c in changes} if changes else None
        if self.gate is not None and (stopped := self.gate(workflow, event)) is not None:
            return RulePlan(workflow.id, False, stopped, workflow=workflow, gated=True)
        return RulePlan(workflow.id, True, trace=trace, workflow=workflow, kept=kept, start=start)

    def _failed(
        self, plan: RulePlan, planned: PlannedAction, action: Action, event: Event, reason: str
    ) -> None:
        """An action that cannot even be planned (a template or a due time that fails):
        it fails, and, as for one that fails when carried out, the workflow's later
        actions are not carried out (a dry run still shows them)."""
        planned.error = reason
        if self._dry is None:
            planned.status, planned.result = "failed", reason
            plan.failed = True
            assert plan.workflow is not None
            self.performer.unplanned(plan.workflow, action, event, reason)

    def _templated(self, action: Action) -> bool:
        """Whether the action's parameters hold a template."""
        found = self._templates.get(id(action))
        if found is None:
            found = self._templates[id(action)] = (
                next(iter_templates(action.params), None) is not None
            )
        return found

    def _context(self, event: Event, at: datetime, related: Related | None) -> dict[str, Any]:
        return template_context(event, at, self.tz, related)

    def _plan_actions(
        self,
        workflow: Workflow,
        plan: RulePlan,
        event: Event,
        facts: Facts,
        shared: Callable[[], dict[str, Any]],
        start: datetime,
        now: datetime,
    ) -> None:
        """Plans the workflow's actions; `shared` makes the templates' context of the event."""
        steps: dict[str, Any] = {}
        context: dict[str, Any] | None = None
        base: datetime | None = start
        waited = False
        for action in workflow.actions:
            try:
                due = None if base is None else _after(base, action, self.tz)
            except DateOutOfRange as exc:
                # This action fails (a delay past year 9999, business days without a
                # calendar); the others keep their own due times, counted from the event.
                planned = PlannedAction(action.type, action.index, None, action.id)
                self._failed(plan, planned, action, event, str(exc))
                plan.actions.append(planned)
                if action.id:
                    steps[action.id] = {}
                continue
            planned = PlannedAction(action.type, action.index, due, action.id, after_wait=waited)
            plan.actions.append(planned)
            if action.condition is not None and not action.condition.check(facts):
                planned.skipped = "if: " + action.condition.reason(facts)
                if action.id:
                    steps[action.id] = {}
                continue
            if action.type == "wait":
                params: Any = action.raw
                try:
                    base = (
                        None
                        if action.wait_for is None or due is None
                        else action.wait_for.add_to(due, self.tz)
                    )
                except DateOutOfRange as exc:
                    self._failed(plan, planned, action, event, str(exc))
                    base = None
                    waited = True  # the actions behind it wait on a wait that failed
                    continue
                waited = True
            else:
                if context is None and self._templated(action):
                    # Made for the first action that renders a template: most render none.
                    context = dict(shared())
                    context["rule"] = {"id": workflow.id, "name": workflow.title}
                    context["steps"] = Record(steps)
                try:
                    # Parameters without templates never look at the context.
                    params = render_tree(action.params, context or _NO_CONTEXT)
                except TemplateFailure as exc:
                    self._failed(plan, planned, action, event, str(exc))
                    if action.id:
                        steps[action.id] = {}
                    continue
            planned.params = params
            if self._dry is not None:
                # A dry run needs no more than the action and its parameters.
                planned.output = self._dry.output(action, params)
            else:
                run = ActionRun(workflow, action, planned, params, event, facts, plan, steps, now)
                planned.output = self.performer.perform(run)
            if action.id:
                steps[action.id] = planned.output or {}


_NO_CONTEXT: dict[str, Any] = {}


def _worded(words: Wording | None, rule: str, reason: str) -> Any:
    """(rule, reason), or what `words` makes of it."""
    return (rule, reason) if words is None else words.said(rule)(reason)


def _event_of(data: Mapping[str, Any]) -> Event:
    """The Event of a trusted raw mapping; an `at` that is a string is read as parse_event does."""
    at = data.get("at")
    if type(at) is str:
        return parse_event(dict(data))
    return Event(
        data["entity"],
        data["event"],
        data["record"],
        data.get("previous"),
        data.get("actor"),
        at,
        data.get("rule"),
        chain=data.get("chain"),
    )


def _after(base: datetime, action: Action, tz: tzinfo) -> datetime:
    return action.due_from(base, tz)
