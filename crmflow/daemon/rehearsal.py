"""A dry rehearsal of the daemon: what it would do as a case's clock moves, touching nothing.

`crmflow test` changes a case's records and moves its clock; the rehearsal answers with
the daemon's own parts (the pending table, DueActions, Waits, Schedules, the executor's
re-check at fire time) over an in-memory state database and the records the case's
steps left, with effects that only say what they would have done. A test and the daemon
therefore cannot disagree on what fires, what is cancelled and why.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, cast

from crmflow.config import Config
from crmflow.daemon.due import DueActions, finish
from crmflow.daemon.log import Log
from crmflow.daemon.schedules import Schedules
from crmflow.daemon.waits import Waits
from crmflow.engine.digests import COLLECTED
from crmflow.engine.effects.base import Job, Outcome, Services
from crmflow.engine.evaluate import Evaluator, Plan
from crmflow.engine.events import Event
from crmflow.engine.execute import Executor
from crmflow.rules.registry import ACTIONS
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow
from crmflow.state.store import PendingAction, State, StoredCooldowns
from crmflow.timeutil import format_utc

if TYPE_CHECKING:
    from crmflow.crm.database import CRM

# Steps that let more than this many rows fall due (a cron every minute across a year)
# are refused rather than run for minutes.
MAX_DUE_PER_STEP = 1000

# History outcomes that are decisions about a whole workflow, not about an action: a
# schedule occurrence's summary says how many records it fired for.
_DECISIONS = ("fired", "not_fired")
# What handling a change may do beside planning its own actions: end or set aside runs.
_SET_ASIDE = ("cancelled", "queued", "dropped", "held")


class TooMuchDue(Exception):
    """A step would let more than MAX_DUE_PER_STEP pending rows fall due."""


@dataclass
class Happened:
    """One thing the daemon did at due time: an action fired or cancelled, a wait ended,
    a schedule occurrence ran."""

    rule: str
    type: str
    record: Any
    at: datetime
    outcome: str
    reason: str | None = None
    params: Any = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule, "type": self.type}
        if self.record is not None:  # a schedule occurrence is about no one record
            data["record"] = self.record
        data["at"] = format_utc(self.at)
        data["outcome"] = self.outcome
        if self.reason:
            data["reason"] = self.reason
        if self.outcome == "fired":
            data["params"] = self.params
        return data


class CaseRecords:
    """The CRM as a case's steps left it: the latest version of each record.

    Records embed their related records (`deal.contact.email`), as events do, so there
    are no relations to follow.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._ids: dict[tuple[str, str], Any] = {}

    def put(self, entity: str, record: dict[str, Any]) -> None:
        key = (entity, str(record.get("id")))
        self._rows[key] = copy.deepcopy(record)
        self._ids[key] = record.get("id")

    def id_of(self, entity: str, record_id: Any) -> Any:
        """The id as the case wrote it (the pending table keeps ids as text)."""
        return self._ids.get((entity, str(record_id)), record_id)

    def drop(self, entity: str, record_id: Any) -> None:
        self._rows.pop((entity, str(record_id)), None)

    def get(self, entity: str, record_id: Any) -> dict[str, Any] | None:
        # Ids come back from the pending table as text; a case writes them as it likes.
        row = self._rows.get((entity, str(record_id)))
        return copy.deepcopy(row) if row is not None else None

    def all(self, entity: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(r) for (e, _), r in self._rows.items() if e == entity]

    def find(self, entity: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        """Records whose fields equal `where`'s (recipients by role: `role:NAME`)."""
        return [r for r in self.all(entity) if all(r.get(k) == v for k, v in where.items())]

    def related(self) -> None:
        return None


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class _JournalState(State):
    """The state database in memory, keeping every history entry in order as well."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__("sqlite://", clock=clock)
        self.journal: list[tuple[datetime, str, dict[str, Any]]] = []

    def record(self, outcome: str, **fields: Any) -> None:
        super().record(outcome, **fields)
        self.journal.append((self.clock(), outcome, fields))


def _cause_first(journal: list[Any], mark: int) -> None:
    """Move the last entry (a wait's end, a schedule occurrence) before those since `mark`.

    The daemon records a wait's end, and an occurrence's summary, after what they caused
    (followers cancelled, actions fired); read in that order, effects precede causes.
    """
    if len(journal) > mark + 1:
        journal.insert(mark, journal.pop())


class _OccurrenceSchedules(Schedules):
    """The daemon's Schedules, with each occurrence told before what it fired, and those
    that fired for no record not told at all: every weekday's run of an unrelated cron
    would bury what a case is about."""

    def run(self, row: PendingAction, now: datetime, rules: RuleSet, evaluator: Evaluator) -> None:
        journal = cast(_JournalState, self.state).journal
        mark = len(journal)
        super().run(row, now, rules, evaluator)
        if len(journal) == mark:
            return
        if any(outcome not in _DECISIONS for _, outcome, _ in journal[mark:-1]):
            _cause_first(journal, mark)
        else:
            journal.pop()


@dataclass
class _NotingWaits(Waits):
    """The daemon's Waits, noting which waits ended because `until` held."""

    met: dict[str, bool] = field(default_factory=dict)

    def end(self, row: PendingAction, workflow: Workflow, *, met: bool, now: datetime) -> None:
        self.met[row.key] = met
        journal = cast(_JournalState, self.state).journal
        mark = len(journal)
        super().end(row, workflow, met=met, now=now)
        _cause_first(journal, mark)


@dataclass
class _DryEffects:
    """Effects that carry nothing out: each says it was done and remembers its params."""

    params: dict[str, Any] = field(default_factory=dict)

    def table(self) -> dict[str, Callable[[Job], Outcome]]:
        return {name: self._perform for name in ACTIONS.names()}

    def _perform(self, job: Job) -> Outcome:
        self.params[job.key] = job.params
        output = job.action.definition.dry_output(job.params, job.services.rng)
        return Outcome("done", "dry run: not carried out", output)


class Rehearsal:
    """The daemon over one case: its changes are handled, its due rows run, dry."""

    def __init__(
        self, rules: RuleSet, config: Config, tz: tzinfo, now: datetime, *, seed: int
    ) -> None:
        config = replace(config, timezone=tz)
        self.rules = rules
        self.clock = _Clock(now)
        self.records = CaseRecords()
        self.state = _JournalState(self.clock)
        self.effects = _DryEffects()
        # The executor reads records (get, related) and nothing else from its CRM.
        crm = cast("CRM", self.records)
        services = Services(config, crm, clock=self.clock, sleep=lambda _: None)
        self.executor = Executor(
            services, self.state, inline_retries=False, effects=self.effects.table()
        )
        # Cooldowns kept where the daemon keeps them.
        cooldowns = StoredCooldowns(self.state)
        self.evaluator = Evaluator(
            rules, tz, seed=seed, performer=self.executor, cooldowns=cooldowns
        )
        # Generated codes come from the case's seed, as in a plan without time steps.
        services.rng = self.evaluator.rng
        log = Log("plain", stream=io.StringIO())
        self.waits = _NotingWaits(self.state, log, tz, self.records.related)
        settings = config.daemon
        self.schedules = _OccurrenceSchedules(
            self.state,
            self.executor,
            log,
            tz,
            settings.poll_interval.seconds,
            self.records.all,
            lambda row, status, reason: finish(self.executor, log, row, status, reason),
        )
        self.due = DueActions(
            self.state,
            self.executor,
            log,
            self.waits,
            self.schedules,
            "rehearsal",
            settings.lease.seconds,
        )
        self.schedules.ensure(rules, now)

    @property
    def now(self) -> datetime:
        return self.clock.now

    def handle(self, event: Event) -> tuple[Plan, list[Happened]]:
        """A change of a record at the clock's now, handled as the daemon handles one: the
        CRM holds it, waits on the record check `until`, workflows are evaluated, and
        whatever that made due runs."""
        if event.event == "deleted":
            self.records.drop(event.entity, event.id)
        else:
            self.records.put(event.entity, event.record)
        mark = len(self.state.journal)
        self.waits.check(self.rules, event, self.now)
        happened = self._since(mark)
        mark = len(self.state.journal)
        plan = self.evaluator.evaluate(event, self.now)
        self.executor.record_plan(plan)  # as the daemon does: caps count these
        # What the change did to other runs (a mode's verdict, a cap), not what it planned.
        happened += [h for h in self._since(mark) if h.outcome in _SET_ASIDE]
        mark = len(self.state.journal)
        self._run_due(self.now)
        return plan, happened + self._since(mark)

    def advance(self, to: datetime) -> list[Happened]:
        """Move the clock to `to`, running each pending row at its due time, in due order."""
        mark = len(self.state.journal)
        ran = 0
        while (due := self.state.next_due()) is not None and due <= to:
            self.clock.now = max(self.now, due)
            ran += self._run_due(self.now)
            if ran > MAX_DUE_PER_STEP:
                raise TooMuchDue(
                    f"more than {MAX_DUE_PER_STEP} actions fall due in one step "
                    f"(by {format_utc(self.now)}): move the clock in smaller steps"
                )
        self.clock.now = max(self.now, to)
        return self._since(mark)

    def current(self, entity: str, record_id: Any) -> dict[str, Any] | None:
        """The record as the case's steps left it."""
        return self.records.get(entity, record_id)

    def close(self) -> None:
        self.state.dispose()

    def _run_due(self, now: datetime) -> int:
        return self.due.run(now, self.rules, self.evaluator)

    def _since(self, mark: int) -> list[Happened]:
        out = []
        for at, outcome, fields in self.state.journal[mark:]:
            if outcome in _DECISIONS:
                continue
            out.append(self._happened(at, outcome, fields))
        return out

    def _happened(self, at: datetime, outcome: str, fields: dict[str, Any]) -> Happened:
        kind = fields.get("action_type") or ""
        outcome = str(outcome)  # a PendingStatus when the row's status was recorded
        reason = fields.get("detail") or None
        params = None
        if kind == "schedule":
            outcome = "ran" if outcome == "done" else outcome
        elif kind == "wait" and outcome == "done":
            outcome = "met" if self.waits.met.get(fields.get("key") or "") else "timed_out"
        elif outcome == "done" and str(reason or "").startswith(COLLECTED):
            outcome = "collected"  # into a digest: sent with the others at its time
        elif outcome == "done":
            outcome, reason = "fired", None
            params = self.effects.params.get(fields.get("key") or "")
        record = fields.get("record_id")
        return Happened(
            fields.get("workflow") or "",
            kind,
            None if record is None else self.records.id_of(fields.get("entity") or "", record),
            at,
            outcome,
            reason,
            params,
        )
