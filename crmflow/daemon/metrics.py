"""What a daemon has done and how it stands: Prometheus metrics, and its health.

Counters are counted as the daemon goes (changes seen, workflows judged, actions by type
and outcome, sweep findings, faults); what the state database knows for every daemon
alike (pending actions by status, the poll's lag) is read when Prometheus scrapes, so
the numbers never drift from `crmflow status`.

Health: a daemon is healthy while its ticks are recent and, when it leads, its polls
too; it is ready once its first tick is done (systemd's READY=1 comes at that moment).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Ticks or polls older than this many poll intervals make a daemon unhealthy (with a
# floor: a 1 s poll interval should not turn a short database stall into a restart).
STALE_INTERVALS = 5
STALE_FLOOR = 30.0


@dataclass
class Health:
    """When the daemon last finished a tick and (leading) a poll, by the monotonic clock."""

    poll_interval: float
    started: float = field(default_factory=time.monotonic)
    last_tick: float | None = None
    last_poll: float | None = None
    leading: bool = False

    @property
    def limit(self) -> float:
        return max(STALE_INTERVALS * self.poll_interval, STALE_FLOOR)

    def ready(self) -> bool:
        return self.last_tick is not None

    def problems(self, now: float | None = None) -> list[str]:
        """Why the daemon is not healthy; empty when it is."""
        now = time.monotonic() if now is None else now
        found = []
        if self.last_tick is None:
            if now - self.started > self.limit:
                found.append(f"no tick finished in {now - self.started:.0f}s since start")
        elif now - self.last_tick > self.limit:
            found.append(f"last tick finished {now - self.last_tick:.0f}s ago")
        if self.leading and self.last_poll is not None and now - self.last_poll > self.limit:
            found.append(f"last poll {now - self.last_poll:.0f}s ago")
        return found


class _StateCollector(Collector):
    """Pending actions by status and the poll's lag, read from the state when scraped."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            report = self.read()
        except Exception:  # a scrape while the state is down: the rest
            return
        pending = GaugeMetricFamily(
            "crmflow_pending_actions", "Actions in the pending table, by status", labels=["status"]
        )
        for status, count in sorted(report.get("pending", {}).items()):
            pending.add_metric([status], count)
        yield pending
        lag = report.get("lag_seconds")
        if lag is not None:
            yield GaugeMetricFamily(
                "crmflow_poll_lag_seconds", "Seconds since the CRM was last polled", value=lag
            )


class Metrics:
    """The daemon's metrics, in a registry of their own (no process-wide globals)."""

    def __init__(self, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.changes = Counter(
            "crmflow_changes", "Record changes evaluated", ["entity", "event"], registry=r
        )
        self.evaluations = Counter(
            "crmflow_evaluations",
            "Workflows judged against a change, by whether they matched",
            ["result"],
            registry=r,
        )
        self.actions = Counter(
            "crmflow_actions", "Actions, by type and outcome", ["type", "outcome"], registry=r
        )
        self.sweep_findings = Counter(
            "crmflow_sweep_findings",
            "Changes the reconciliation sweep found that polls had missed",
            registry=r,
        )
        self.faults = Counter(
            "crmflow_faults", "Faults met: a database, the disk or the network", registry=r
        )
        self.ticks = Counter("crmflow_ticks", "Ticks finished", registry=r)
        self.leader = Gauge("crmflow_leader", "1 while this daemon leads (polls)", registry=r)
        self.last_tick = Gauge(
            "crmflow_last_tick_timestamp_seconds", "When the last tick finished", registry=r
        )
        if status is not None:
            r.register(_StateCollector(status))

    def plan(self, plan: Any) -> None:
        """A change judged: the change, each workflow's verdict, the actions planned."""
        event = plan.event
        self.changes.labels(event.entity, event.event).inc()
        matched = sum(1 for rule in plan.rules if rule.matched)
        if matched:
            self.evaluations.labels("matched").inc(matched)
        if len(plan.rules) > matched:
            self.evaluations.labels("not_matched").inc(len(plan.rules) - matched)

    def action(self, action_type: str, outcome: str) -> None:
        self.actions.labels(action_type, outcome).inc()

    def fault(self) -> None:
        self.faults.inc()

    def late(self) -> None:
        self.sweep_findings.inc()

    def tick(self, leading: bool) -> None:
        self.ticks.inc()
        self.leader.set(1 if leading else 0)
        self.last_tick.set_to_current_time()
