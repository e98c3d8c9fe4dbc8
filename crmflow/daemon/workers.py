"""Actions that wait on another host, carried out by a bounded pool of threads.

A webhook, an e-mail or a text message spends nearly all its time waiting for the other
side. The daemon hands such actions to these workers and goes on: at most `concurrency`
run at once, at most `per_host` of them to one host, so a host that hangs until its
timeout holds its own slots and no others, and neither the next poll nor another
host's actions wait for it.

A task waits in its host's queue while that host's slots are taken. Its row is claimed
(crmflow_pending, with a lease) all the while; a task still queued when the lease is
nearly out is dropped unrun, since the row may be claimed again by then (by another
daemon, or by this one) and running it here too could send it twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crmflow.config import Config

# Of a claim's lease, the part a task may spend queued: the rest is room for the
# attempt itself (a host's timeout) before the claim runs out.
QUEUED_SHARE = 0.5
# A host's queue holds about this many seconds of its work (judged by how long its
# recent actions took), so its slots stay busy until the next tick claims more; and at
# least BACKLOG_MIN rows per slot, the most for a host that is slow or hangs.
QUEUE_SECONDS = 2.0
BACKLOG_MIN = 2
# The weight of the latest action in a host's running mean of durations.
MEAN_WEIGHT = 0.2


@dataclass
class Task:
    host: str
    run: Callable[[], None]
    # Called instead of `run` for a task that will not run here (stopped, lease nearly out).
    give_back: Callable[[], None]
    # time.monotonic() after which the task is dropped unrun.
    expires: float
    # The pending row the task carries out: kept out of "cut off" requeues while in hand.
    row_id: int | None = None


def _endpoint(url: str) -> str:
    # A port of its own is another server: host and port, as the URL gives them.
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or '?'}:{parts.port or parts.scheme}"
    except ValueError:
        return "?"


def destination(action_type: str, params: Any, config: Config) -> str:
    """The host an action waits on, for the per-host limit."""
    if action_type == "webhook" and isinstance(params, dict):
        return "web:" + _endpoint(str(params.get("url", "")))
    if action_type == "sms":
        return "sms:" + _endpoint(config.sms.gateway or "")
    if action_type in ("email", "notify"):
        # Every message goes through one mail server (or into the maildir).
        return "mail:" + (config.email.host or config.email.transport)
    return action_type


class Workers:
    """A fixed pool of threads fed by one queue per host."""

    def __init__(
        self,
        concurrency: int,
        per_host: int,
        *,
        on_error: Callable[[BaseException], None],
        name: str = "action",
    ) -> None:
        self.concurrency = max(1, concurrency)
        self.per_host = max(1, min(per_host, self.concurrency))
        self.name = name
        # Told of what a task raised: the thread lives on to run the next one.
        self.on_error = on_error
        self._lock = threading.Condition()
        self._queues: OrderedDict[str, deque[Task]] = OrderedDict()
        self._running: dict[str, int] = {}
        self._took: dict[str, float] = {}  # host: running mean of an action's seconds
        self._in_hand: set[int] = set()
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- the daemon's side -----------------------------------------------------------
    def submit(self, task: Task) -> None:
        with self._lock:
            stopping = self._stopping
            if not stopping:
                self._enqueue(task)
        if stopping:
            task.give_back()

    def _enqueue(self, task: Task) -> None:
        """Queue `task` (the lock held), starting a thread if none is free."""
        self._queues.setdefault(task.host, deque()).append(task)
        if task.row_id is not None:
            self._in_hand.add(task.row_id)
        # Threads are started as work first needs them, up to the bound.
        idle = len(self._threads) - self._busy
        if idle < self._queued() and len(self._threads) < self.concurrency:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._lock.notify()

    def has_room(self, host: str) -> bool:
        """Whether `host`'s queue takes another task (else its row waits in the table)."""
        with self._lock:
            took = self._took.get(host)
            per_slot = BACKLOG_MIN if not took else max(BACKLOG_MIN, QUEUE_SECONDS / took)
            return len(self._queues.get(host, ())) < per_slot * self.per_host

    def in_hand(self) -> frozenset[int]:
        """The pending rows queued or running here."""
        with self._lock:
            return frozenset(self._in_hand)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running (True), or `timeout` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._busy or self._queued():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def stop(self, timeout: float) -> int:
        """Give back what is queued, wait up to `timeout` for what runs; how many were
        still running then (their rows' leases run out, as after a crash)."""
        with self._lock:
            self._stopping = True
            queued = [task for queue in self._queues.values() for task in queue]
            self._queues.clear()
            self._lock.notify_all()
        for task in queued:
            self._give_back(task)
        self.settle(timeout)
        with self._lock:
            return self._busy

    # -- the threads' side -----------------------------------------------------------
    def _queued(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _next(self) -> Task | None:
        """The first queued task of a host with a free slot, hosts taken in turn."""
        for host, queue in self._queues.items():
            if queue and self._running.get(host, 0) < self.per_host:
                task = queue.popleft()
                if not queue:
                    del self._queues[host]
                else:  # this host goes to the back: the others are served first
                    self._queues.move_to_end(host)
                return task
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                task = self._next()
                while task is None:
                    if self._stopping:
                        return
                    self._lock.wait()
                    task = self._next()
                self._busy += 1
                self._running[task.host] = self._running.get(task.host, 0) + 1
            started = time.monotonic()
            ran = started <= task.expires
            try:
                if ran:
                    task.run()
                else:
                    self._give_back(task, done=False)
            except Exception as exc:
                self.on_error(exc)
            finally:
                took = time.monotonic() - started
                with self._lock:
                    if ran:  # how long the host takes, for has_room
                        mean = self._took.get(task.host, took)
                        self._took[task.host] = mean + MEAN_WEIGHT * (took - mean)
                    self._busy -= 1
                    self._running[task.host] -= 1
                    if task.row_id is not None:
                        self._in_hand.discard(task.row_id)
                    # A slot is free: a task of this host may go, and settle() may return.
                    self._lock.notify_all()

    def _give_back(self, task: Task, *, done: bool = True) -> None:
        try:
            task.give_back()
        finally:
            if done and task.row_id is not None:
                with self._lock:
                    self._in_hand.discard(task.row_id)
                    self._lock.notify_all()
