"""`crmflow run`: watch the CRM, fire workflows, keep every promise across restarts.

One tick = poll each watched entity for changes (evaluating workflows for each, in
commit order), then carry out whatever pending actions are due. Pending actions
(delays, waits, schedules, date triggers, retries) are rows in the state database, read
against an injectable clock; APScheduler only wakes the loop, so a restart rebuilds
everything from the table.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from crmflow.config import Config
from crmflow.crm import rights
from crmflow.crm.database import CRM
from crmflow.daemon.batches import Batches
from crmflow.daemon.capture import Capture, Change, baseline_change
from crmflow.daemon.chains import ChainGuard
from crmflow.daemon.dates import Dates
from crmflow.daemon.due import DueActions, finish
from crmflow.daemon.faults import Faults, Gone, is_fault, label
from crmflow.daemon.leadership import Leadership
from crmflow.daemon.log import Log
from crmflow.daemon.metrics import Health, Metrics
from crmflow.daemon.notify import Notifier
from crmflow.daemon.schedules import Schedules
from crmflow.daemon.sweep import Sweep
from crmflow.daemon.waits import Waits
from crmflow.daemon.workers import Workers
from crmflow.engine.evaluate import Evaluator, Plan
from crmflow.engine.runtime import build_runtime
from crmflow.errors import ConfigError, CrmflowError
from crmflow.rules.ruleset import RuleSet, load_ruleset
from crmflow.state.store import PAUSED, PendingAction, PendingStatus, State
from crmflow.timeutil import Clock, format_utc, parse_instant, system_clock

# A daemon beats (crmflow_daemons.heartbeat_at) every tick and, when a tick runs long (a
# burst of changes, slow webhooks) or the poll interval is long, from a side thread: a
# live daemon's beats are never much more than HEARTBEAT_EVERY seconds apart, whatever
# its poll interval.
HEARTBEAT_EVERY = 5.0
# The silence after which a daemon counts as gone, stored with its row for `crmflow
# status` to judge: several missed beats, with room for a beat that waits on a busy
# SQLite state (busy_timeout 10 s) or a slow PostgreSQL connection. Not `lease`: that is
# how long a claim on an action lasts, minutes by default, and a daemon killed a minute
# ago should not be shown as running.
HEARTBEAT_TIMEOUT = 30.0
# The least time a tick spends carrying out due actions before it polls again (the poll
# interval when that is longer).
DUE_BUDGET = 1.0


@dataclass
class TickSummary:
    changes: int = 0
    actions: int = 0
    started: datetime | None = None
    notes: list[str] = field(default_factory=list)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = system_clock,
        log: Log | None = None,
        sleep: Callable[[float], None] | None = None,
        db_clock: Clock | None = None,
        shadow: bool = False,
    ) -> None:
        # A shadow run (`run --shadow`): the real CRM read, nothing acted on, its own state.
        self.shadow = shadow
        self.config = config
        self.clock = clock
        self.log = log or Log()
        # What Prometheus scrapes and /healthz answers (`run --http`), and systemd's
        # notify socket: every change and action the log reports is counted.
        self.metrics = Metrics(status=self._status)
        self.log.observer = self.metrics
        self.health = Health(config.daemon.poll_interval.seconds)
        self.notifier = Notifier()
        self.tz = config.timezone
        if config.crm is None:
            raise ConfigError("no CRM is configured (`crm` in crmflow.yaml)")
        self.rules = load_ruleset(config.rules, config, full=True)
        self._rule_stamp = self._rules_fingerprint()
        self.runtime = build_runtime(
            config,
            dry_run=False,
            clock=clock,
            sleep=sleep,
            inline_retries=False,
            paused=lambda: self.paused,
            gate=ChainGuard(config.daemon.chain_depth),
            shadow=shadow,
        )
        assert self.runtime.crm is not None and self.runtime.state is not None
        assert self.runtime.services is not None and self.runtime.executor is not None
        self.crm: CRM = self.runtime.crm
        self.state: State = self.runtime.state
        self.services = self.runtime.services
        self.executor = self.runtime.executor
        # Actions that wait on other hosts go to the workers (daemon/workers.py), never
        # tried while a change is handled.
        self.executor.hand_over = True
        settings = config.daemon
        self.poll_interval = settings.poll_interval.seconds
        self.retention = settings.history_retention
        self.capture = Capture(
            self.crm,
            self.state,
            self.watched(),
            clock,
            overlap=timedelta(seconds=settings.overlap.seconds),
            delete_scan_every=timedelta(seconds=settings.delete_scan_interval.seconds),
            mode=settings.change_capture,
            db_clock=db_clock,
        )
        self.sweep = Sweep(self.capture, timedelta(seconds=settings.reconcile_interval.seconds))
        label(self.crm.engine, "CRM")
        label(self.state.engine, "state")
        self.faults = Faults(self.log)
        self.executor.on_fault = self.faults.failed
        self.executor.on_recovered = self.faults.cleared
        self._crm_file = self.crm.file_identity()
        self.evaluator = self._evaluator()
        self.waits = Waits(self.state, self.log, self.tz, self.crm.related)
        self.schedules = Schedules(
            self.state,
            self.executor,
            self.log,
            self.tz,
            self.poll_interval,
            self._records,
            self._finish,
        )
        self.dates = Dates(self.capture, self.executor, self.log)
        self.batches = Batches(
            self.state,
            self.capture,
            self.log,
            lambda change, now: self.handle(change, now, take_chain=False),
        )
        self.lease = settings.lease.seconds
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.due = DueActions(
            self.state,
            self.executor,
            self.log,
            self.waits,
            self.schedules,
            self.id,
            self.lease,
            Workers(
                config.actions.concurrency,
                config.actions.per_host,
                on_error=lambda exc: self.log.warn(
                    f"an action's outcome was not recorded ({type(exc).__name__}: {exc}): "
                    "it runs again, under its key, when its claim runs out"
                ),
            ),
        )
        self.started = clock().timestamp()
        self.heartbeat_every = HEARTBEAT_EVERY
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT
        self._beat_lock = threading.Lock()
        self._beaten = 0.0  # time.monotonic() of the last heartbeat
        self.leadership = Leadership(self.state.engine)
        self.last_poll: datetime | None = None
        self._pruned: datetime | None = None
        self._wake = threading.Event()
        self._paused: bool | None = None
        self._said_how_writes_go = False

    # -- set-up -----------------------------------------------------------------------
    def _evaluator(self) -> Evaluator:
        return self.runtime.evaluator(self.rules)

    def watched(self) -> list[str]:
        """Entities whose changes matter: those of record, date and wait workflows."""
        names = {
            w.entity for w in self.rules.workflows if w.enabled and w.trigger.kind != "schedule"
        }
        names |= {w.entity for w in self.rules.workflows if any(a.until for a in w.actions)}
        return sorted(n for n in names if n in self.config.model)

    @property
    def paused(self) -> bool:
        # Read once per tick: the executor asks for every action it performs.
        if self._paused is None:
            self._paused = self.state.flag(PAUSED) is not None
        return self._paused

    def start(self, *, backfill: bool = False) -> dict[str, int]:
        """Recover from a crash, take baselines, and make sure schedules are planned."""
        # The effects (mail, web) are loaded with the first action elsewhere; a daemon will
        # act, and should not pay for the imports inside its first burst of changes.
        import crmflow.engine.effects.by_type  # noqa: F401

        if self.shadow and not self._said_how_writes_go:
            self.log.note(
                "shadow run: judging every change, acting on nothing (what each action "
                f"would do is recorded as shadow in {self.config.state_url})"
            )
            self._said_how_writes_go = True
        if not self._said_how_writes_go:
            # Asked once, before anything: a right the role lacks is a configuration error.
            rights.require(
                self.crm.engine,
                self.rules.workflows,
                self.config.model,
                self.watched(),
                triggers=self.config.daemon.change_capture == "triggers",
            )
            if not self.crm.ensure_applied():
                self.log.warn(
                    "the CRM database cannot hold crmflow_applied: CRM writes are at-least-once"
                    + rights.applied_hint(self.crm.engine)
                )
            self._said_how_writes_go = True
        if not self.leadership.shared:
            # The only daemon: whatever ran at a crash is due again. (Daemons that share a
            # PostgreSQL state leave others' rows alone; their leases run out instead.)
            requeued = self.state.requeue_running()
            if requeued:
                self.log.note(f"{requeued} action(s) cut off by a stop are due again")
        if not self.leadership.check():
            self.log.note("another daemon leads (polls and plans); this one carries out actions")
            self._heartbeat(False)
            return {}
        self.log.note("leading: polling the CRM and planning schedules")
        self._heartbeat(True, took_lead=True)
        counts = self.capture.ensure_baselines(
            each=(lambda change: self.handle(change, self.clock())) if backfill else None,
            taken=lambda entity, seen: self.log.note(
                f"baseline of {entity}: {seen} record(s)" + ("" if backfill else ", nothing fired")
            ),
        )
        if backfill:
            self.dates.mark_planned(self.rules, set(counts))
        self.schedules.ensure(self.rules, self.clock())
        self.dates.ensure(self.rules, self.evaluator, self.clock())
        return counts

    def backfill_preview(self) -> dict[str, int]:
        """What `--backfill` would fire: per workflow, the existing records it matches.

        Each record is judged as the backfill will judge it (the same event, through
        `Evaluator.matching`, which plans nothing and records nothing).
        """
        entities = sorted(
            {w.entity for w in self.rules.workflows if w.enabled}
            - {e for e in self.capture.entities if self.capture.ready(e)}
        )
        preview = {
            w.id: 0
            for w in self.rules.workflows
            if w.enabled and w.entity in entities and w.trigger.events & {"created"}
        }
        now = self.clock()
        for entity in entities:
            for records in self.capture.pages(entity):
                for record in records:
                    event = baseline_change(entity, record).to_event(now)
                    for rule in self.evaluator.matching(event, now):
                        preview[rule] = preview.get(rule, 0) + 1
        return preview

    def _records(self, entity: str) -> list[dict[str, Any]]:
        return self.crm.find(entity, {})

    # -- one tick ---------------------------------------------------------------------
    def _heartbeat(self, leader: bool | None, *, took_lead: bool = False) -> None:
        """Record that this daemon lives (and whether it leads: None leaves that as is).

        On taking the lead it clears every other row's leader flag: the lock it now holds
        was let go, so whoever had it no longer leads, and may have died without a word.
        """
        with self._beat_lock:
            self.state.heartbeat(
                self.id,
                self.host,
                os.getpid(),
                leader,
                self.started,
                timeout=self.heartbeat_timeout,
                took_lead=took_lead,
            )
            self._beaten = time.monotonic()

    def _beat_between_ticks(self, done: threading.Event) -> None:
        """The side thread of `run`: a heartbeat whenever the loop has not given one for
        heartbeat_every seconds, so a long tick does not make a live daemon look gone.

        It never touches the leader flag: whether the lead is still held is learnt at
        the start of a tick, and a flag set from here could outlive the lock.
        """
        failing = False
        while not done.wait(self.heartbeat_every):
            if time.monotonic() - self._beaten < self.heartbeat_every:
                continue
            try:
                self._heartbeat(None)
            except SQLAlchemyError as exc:
                if not failing:  # one line per outage; the tick reports the fault itself
                    self.log.warn(f"heartbeat not recorded: {str(exc).splitlines()[0]}")
                failing = True
            else:
                failing = False

    def tick(self, *, settle: bool = True) -> TickSummary:
        """One tick; with `settle`, it returns once the actions it handed to workers are
        tried and recorded (the loop does not wait: a slow host holds up no poll)."""
        summary = self._tick()
        if settle:
            self.due.settle()
        # Only a tick that ran to its end counts: a hung or failing daemon goes stale.
        moment = time.monotonic()
        self.health.last_tick = moment
        self.health.leading = self.leadership.leading
        if self.leadership.leading:
            self.health.last_poll = moment
        self.metrics.tick(self.leadership.leading)
        self.notifier.tick()
        return summary

    def _status(self) -> dict[str, Any]:
        """Pending actions by status and the poll's lag, for a scrape."""
        last = self.state.flag("last_poll")
        lag = (self.clock() - parse_instant(last)).total_seconds() if last else None
        return {"pending": self.state.status_counts(), "lag_seconds": lag}

    def _tick(self) -> TickSummary:
        now = self.clock()
        self._paused = None  # `crmflow pause` / `resume` from another process take effect here
        self.executor.forget_held()
        summary = TickSummary(started=now)
        self.reload_if_changed()
        was_leading = self.leadership.leading
        leading = self.leadership.check()
        self._heartbeat(leading, took_lead=leading and not was_leading)
        if leading and not was_leading:
            self.log.note("took over the lead: polling the CRM and planning schedules")
            self.start_leading()
        if not leading:
            if not self.paused:
                summary.actions += self.run_due(now)
            return summary
        self._check_crm_file(now)
        # The CRM database's clock, once per tick: what the polls' windows are measured by.
        polling = self.capture.mode == "polling"
        db_now = self.capture.db_now() if polling else None
        for entity in self.capture.entities:
            changes = self.capture.poll(entity, db_now)
            changes += self.capture.scan_deletes(entity)
            if not self._take(entity, changes, now, summary):
                self.capture.advance(entity)
            if polling:
                self._take(entity, self.sweep.step(entity, now), now, summary)
        self.last_poll = now
        self.state.set_flag("last_poll", format_utc(now))
        if not self.paused:
            summary.actions += self.run_due(now)
        self._prune(now)
        return summary

    def _take(
        self, entity: str, changes: list[Change], now: datetime, summary: TickSummary
    ) -> bool:
        """Evaluate the changes in order, in batches (daemon/batches.py); True when one
        begun by a stopped daemon was finished instead (the watermark then stays, so the
        row is read again)."""
        handled, recovered = self.batches.take(entity, changes, now)
        summary.changes += handled
        return recovered

    def _check_crm_file(self, now: datetime) -> None:
        """An SQLite CRM file deleted or replaced (a restored backup) under the daemon.

        Pooled connections would go on reading the old, deleted file: they are dropped,
        and a sweep compares every row of the new file with the snapshot.
        """
        if self._crm_file is None:
            return
        try:
            identity = self.crm.file_identity()
        except FileNotFoundError:
            raise Gone(f"CRM database unavailable: the file {self.crm.url} is gone") from None
        if identity == self._crm_file:
            return
        self.crm.reconnect()
        self._crm_file = identity
        self.log.warn(
            "the CRM database file was replaced (a new file at the same path): reconnected; "
            "a sweep compares every row with the snapshot"
        )
        for entity in self.capture.entities:
            self.sweep.restart(entity, now)

    def handle(self, change: Change, now: datetime, *, take_chain: bool = True) -> Plan:
        if take_chain:
            change.chain = self.state.take_write(change.entity, change.record_id)
        event = change.to_event(now)
        self.waits.check(self.rules, event, now)
        plan = self.evaluator.evaluate(event, now)
        self.executor.record_plan(plan)
        for rule in plan.rules:
            if rule.gated:
                self.state.record(
                    "loop_stopped",
                    workflow=rule.rule,
                    entity=event.entity,
                    record_id=event.id,
                    detail=rule.reason,
                )
                self.log.warn(f"{rule.rule}: {rule.reason}")
        self.log.plan(plan)
        return plan

    # -- due actions ------------------------------------------------------------------
    def start_leading(self) -> None:
        """A daemon that takes over the lead: baselines it lacks, schedules it plans."""
        self.capture.ensure_baselines()
        self.schedules.ensure(self.rules, self.clock())
        self.dates.ensure(self.rules, self.evaluator, self.clock())

    def run_due(self, now: datetime) -> int:
        # About one poll interval's worth of due actions per tick: polls keep their pace.
        budget = max(self.poll_interval, DUE_BUDGET)
        return self.due.run(
            now, self.rules, self.evaluator, budget, release=self.leadership.leading
        )

    def _finish(
        self, row: PendingAction, status: PendingStatus, reason: str | None, history: bool = False
    ) -> None:
        finish(self.executor, self.log, row, status, reason, history)

    # -- reloading --------------------------------------------------------------------
    def _rules_fingerprint(self) -> tuple[tuple[str, float, int], ...]:
        from crmflow.rules.yamlload import iter_yaml_files

        files = []
        for path in iter_yaml_files([Path(p) for p in self.config.rules if Path(p).exists()]):
            stat = path.stat()
            files.append((str(path), stat.st_mtime, stat.st_size))
        return tuple(files)

    def reload_if_changed(self, force: bool = False) -> bool:
        stamp = self._rules_fingerprint()
        if not force and stamp == self._rule_stamp:
            return False
        self._rule_stamp = stamp
        try:
            # The whole lint, as at start: a set `crmflow lint` rejects never goes live.
            rules = load_ruleset(self.config.rules, self.config, full=True)
        except CrmflowError as exc:
            self.log.warn(f"workflows not reloaded, keeping the running set: {exc}")
            return False
        self._apply_rules(rules)
        return True

    def _apply_rules(self, rules: RuleSet) -> None:
        removed = set(self.rules.by_id) - set(rules.by_id)
        self.rules = rules
        self.evaluator = self._evaluator()
        for workflow_id in sorted(removed):
            for row in self.state.find_pending(workflow=workflow_id):
                self._finish(row, PendingStatus.CANCELLED, f"workflow {workflow_id} was removed")
        added = [e for e in self.watched() if e not in self.capture.entities]
        self.capture.entities.extend(added)
        self.capture.ensure_baselines(added)
        self.schedules.ensure(self.rules, self.clock())
        self.dates.ensure(self.rules, self.evaluator, self.clock())
        self.log.note(
            f"workflows reloaded: {len(rules)} loaded"
            + (f", removed {', '.join(sorted(removed))}" if removed else "")
        )

    # -- housekeeping -----------------------------------------------------------------
    def _prune(self, now: datetime) -> None:
        if self._pruned is not None and now - self._pruned < timedelta(hours=1):
            return
        self._pruned = now
        cutoff = now - timedelta(seconds=self.retention.approx_seconds())
        removed = self.state.prune_history(cutoff)
        if removed:
            self.log.note(f"history: pruned {removed} entries older than {self.retention}")
        # A digest's items are kept as long as the history of their sending.
        self.state.prune_digests(cutoff)
        # Rows of daemons gone for over an hour (state.GONE_RETENTION): status has shown
        # them as gone long enough.
        forgotten = self.state.prune_daemons(now)
        if forgotten:
            self.log.note(f"forgot {forgotten} daemon(s) gone for over an hour")

    # -- the loop ---------------------------------------------------------------------
    def request_stop(self, stop: threading.Event) -> None:
        """From a signal handler: finish the work in hand, then leave the loop."""
        stop.set()
        self._wake.set()

    def request_reload(self, reload: threading.Event) -> None:
        reload.set()
        self._wake.set()

    def run(
        self,
        stop: threading.Event,
        reload: threading.Event | None = None,
        *,
        backfill: bool = False,
    ) -> None:
        """Start, then tick until `stop` is set; APScheduler wakes the loop for polls and
        due times. A fault (crmflow.daemon.faults) is logged and retried with backoff,
        the start included; anything else is a bug and ends the daemon."""
        from apscheduler.schedulers.background import BackgroundScheduler

        wake = self._wake
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(wake.set, "interval", seconds=self.poll_interval, id="poll")
        scheduler.start()
        beating = threading.Event()
        beats = threading.Thread(
            target=self._beat_between_ticks, args=(beating,), name="heartbeat", daemon=True
        )
        beats.start()
        started = False
        try:
            while not stop.is_set():
                try:
                    if not started:
                        self.start(backfill=backfill)
                        started = True
                        self.log.note(
                            f"running: {len(self.rules)} workflows, watching "
                            f"{', '.join(self.capture.entities) or 'nothing'}, every "
                            f"{self.poll_interval:g}s"
                        )
                    if reload is not None and reload.is_set():
                        reload.clear()
                        self.reload_if_changed(force=True)
                    self.tick(settle=False)
                    next_due = self.state.next_due()
                except Exception as exc:
                    if not is_fault(exc):
                        raise
                    wake.wait(self.faults.failed(exc))
                    wake.clear()
                    continue
                if self.faults.current is not None:
                    # Due rows this daemon had claimed when the fault cut its tick short.
                    self.state.requeue_running(owner=self.id, keep=self.due.in_hand())
                    self.faults.cleared()
                if next_due is not None:
                    delay = (next_due - self.clock()).total_seconds()
                    if delay <= 0:
                        wake.set()  # rows left over by the tick's budget: tick again now
                    if 0 < delay < self.poll_interval:
                        scheduler.add_job(
                            wake.set,
                            "date",
                            id="due",
                            replace_existing=True,
                            run_date=datetime.now(UTC) + timedelta(seconds=delay),
                        )
                if stop.is_set():
                    break
                wake.wait()
                wake.clear()
        finally:
            self.notifier.stopping()
            # Before close() forgets this daemon: a late beat would register it again.
            beating.set()
            beats.join(timeout=self.heartbeat_timeout)
            scheduler.shutdown(wait=False)
            self.log.note("stopped")
            self.close()

    def close(self) -> None:
        # Actions on their way to other hosts get as long as one request may take.
        config = self.config
        timeouts = (config.webhooks.timeout, config.email.timeout, config.sms.timeout)
        self.due.stop(max(t.seconds for t in timeouts) + 5.0)
        self.leadership.release()
        # Closing down: if this fails, the row goes stale on its own.
        with contextlib.suppress(Exception):
            self.state.forget_daemon(self.id)
        self.crm.dispose()
        self.state.dispose()
