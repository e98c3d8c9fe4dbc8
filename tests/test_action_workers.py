"""Actions that wait on other hosts run side by side, within their limits (a real daemon).

The receivers here keep when each request came and how many they held at once; due
times come from the daemon's own pending rows, matched by the `webhook-id` key.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crmflow.crm.demo import create_demo_crm
from tests.crmkit import write_rules
from tests.daemonproc import DaemonProcess, now_sql, sql, state_sql, wait_until


@dataclass
class Counter:
    """Requests held at once, over every receiver that shares it."""

    busy: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.busy += 1
            self.most = max(self.most, self.busy)

    def leave(self) -> None:
        with self.lock:
            self.busy -= 1


class Receiver:
    """A webhook receiver that answers after `delay` seconds; records (key, arrival)."""

    def __init__(self, delay: float, overall: Counter, status: int = 200) -> None:
        self.delay = delay
        self.own = Counter()
        self.arrivals: list[tuple[str, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                arrived = time.time()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.arrivals.append((self.headers["webhook-id"], arrived))
                for counter in (receiver.own, overall):
                    counter.enter()
                try:
                    time.sleep(receiver.delay)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the daemon gave up waiting (its timeout)
                    pass
                finally:
                    for counter in (receiver.own, overall):
                        counter.leave()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self) -> list[str]:
        return [key for key, _ in self.arrivals]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Counter, list[Receiver]]]:
    overall = Counter()
    made: list[Receiver] = []
    with ExitStack() as stack:
        yield overall, made
        for receiver in made:
            stack.callback(receiver.close)


def hook(name: str, url: str, delay: str | None = "1s", then: str = "") -> str:
    """A workflow that calls `url` for each new deal, `delay` after it (None: at once),
    then does `then` (more actions, as YAML lines)."""
    later = f"\n    delay: {delay}" if delay else ""
    return (
        textwrap.dedent(f"""\
        id: {name}
        entity: deal
        trigger: {{on: created}}
        actions:
          - webhook: {{url: "{url}/in", body: {{deal: "{{{{ deal.id }}}}"}}}}""")
        + later
        + then
        + "\n"
    )


def daemon(folder: Path, rules: dict[str, str], extra: str) -> DaemonProcess:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        "crm: sqlite:///crm.db\nrules: rules/\npoll_interval: 200ms\n"
        'webhooks: {allow: ["http://127.0.0.1:*/*"], timeout: 5s}\n' + extra,
        encoding="utf-8",
    )
    write_rules(folder / "rules", rules)
    process = DaemonProcess(folder)
    process.start()
    return process


def add_deals(folder: Path, first: int, count: int) -> None:
    for n in range(first, first + count):
        sql(
            folder,
            f"INSERT INTO deals (id, name, updated_at) VALUES (?, 'd', {now_sql()})",
            n,
        )


def due_at(folder: Path) -> dict[str, float]:
    return {
        str(k): float(str(d))
        for k, d in state_sql(folder, "SELECT key, due_at FROM crmflow_pending")
    }


@pytest.mark.parametrize("delay", ["1s", None], ids=["delayed", "at-once"])
def test_a_hanging_host_holds_up_no_other_host_and_no_poll(
    tmp_path: Path, receivers: tuple[Counter, list[Receiver]], delay: str | None
) -> None:
    """Delayed actions, and actions due the moment their change is handled (they go to
    the workers too: handling a change never waits on a host)."""
    overall, made = receivers
    hanging, fast = Receiver(30.0, overall), Receiver(0.01, overall)
    made += [hanging, fast]
    process = daemon(
        tmp_path,
        {
            "hang.yaml": hook("hang", hanging.url, delay),
            "fast.yaml": hook("fast", fast.url, delay),
        },
        "actions: {concurrency: 4, per_host: 2}\n",
    )
    try:
        add_deals(tmp_path, 1000, 6)
        wait_until(lambda: len(fast.arrivals) >= 6 and len(hanging.arrivals) >= 2, timeout=30)
        # A deal added while the hanging host holds its slots: polled, handled, sent.
        add_deals(tmp_path, 2000, 1)
        wait_until(lambda: len(fast.arrivals) >= 7, timeout=30)
        due = due_at(tmp_path)
        late = [arrived - due[key] for key, arrived in fast.arrivals]
        assert len(late) == 7 and max(late) < 1.0, late
        # Its slots stay taken by its first two until the timeout: nothing else went there.
        assert len(hanging.arrivals) == 2
    finally:
        assert process.stop() == 0


def test_per_host_and_overall_limits_are_never_exceeded(
    tmp_path: Path, receivers: tuple[Counter, list[Receiver]]
) -> None:
    overall, made = receivers
    hosts = [Receiver(0.2, overall) for _ in range(3)]
    made += hosts
    rules = {f"h{n}.yaml": hook(f"h{n}", r.url) for n, r in enumerate(hosts)}
    process = daemon(tmp_path, rules, "actions: {concurrency: 5, per_host: 2}\n")
    try:
        add_deals(tmp_path, 1000, 12)
        wait_until(lambda: all(len(r.arrivals) >= 12 for r in hosts), timeout=60)
        wait_until(
            lambda: (
                state_sql(tmp_path, "SELECT count(*) FROM crmflow_pending WHERE status = 'done'")[
                    0
                ][0]
                == 36
            ),
            timeout=30,
        )
    finally:
        assert process.stop() == 0
    assert [r.own.most for r in hosts] == [2, 2, 2]
    assert overall.most == 5
    assert all(len(r.arrivals) == 12 for r in hosts)


def test_each_key_done_once_across_a_kill_with_actions_in_flight(
    tmp_path: Path, receivers: tuple[Counter, list[Receiver]]
) -> None:
    overall, made = receivers
    slow = Receiver(0.4, overall)
    made.append(slow)
    process = daemon(
        tmp_path, {"slow.yaml": hook("slow", slow.url)}, "actions: {concurrency: 4, per_host: 4}\n"
    )
    add_deals(tmp_path, 1000, 40)
    wait_until(lambda: len(slow.arrivals) >= 10, timeout=60)
    process.kill()
    in_flight = slow.own.busy
    process.start()
    try:
        wait_until(
            lambda: (
                state_sql(tmp_path, "SELECT count(*) FROM crmflow_pending WHERE status = 'done'")[
                    0
                ][0]
                == 40
            ),
            timeout=60,
        )
    finally:
        assert process.stop() == 0
    keys = slow.keys()
    assert set(keys) == set(due_at(tmp_path))
    # Only an action cut off between its send and its record goes again, with its key.
    assert len(keys) - 40 <= 4, (len(keys), in_flight)
    done = state_sql(
        tmp_path,
        "SELECT key, count(*) FROM crmflow_history WHERE outcome = 'done' GROUP BY key",
    )
    assert len(done) == 40 and all(n == 1 for _, n in done)


def test_later_actions_wait_for_the_outcome_of_one_handed_to_a_worker(
    tmp_path: Path, receivers: tuple[Counter, list[Receiver]]
) -> None:
    """A run's actions keep their order and their "an earlier action failed": an update
    after a call is made once the call is done, and not at all when it failed."""
    overall, made = receivers
    slow, refusing = Receiver(0.5, overall), Receiver(0.0, overall, status=404)
    made += [slow, refusing]
    then = '\n  - update: {values: {name: "{{ deal.name }} after the call"}}'
    rules = {
        "ok.yaml": hook("ok", slow.url, delay=None, then=then).replace(
            "trigger: {on: created}", "trigger: {on: created}\nconditions: {amount: 1}"
        ),
        "no.yaml": hook("no", refusing.url, delay=None, then=then).replace(
            "trigger: {on: created}", "trigger: {on: created}\nconditions: {amount: 2}"
        ),
    }
    process = daemon(tmp_path, rules, "actions: {concurrency: 4, per_host: 2}\n")
    try:
        sql(
            tmp_path,
            f"INSERT INTO deals (id, name, amount, updated_at) VALUES (901, 'one', 1, {now_sql()})",
        )
        sql(
            tmp_path,
            f"INSERT INTO deals (id, name, amount, updated_at) VALUES (902, 'two', 2, {now_sql()})",
        )

        def ended() -> bool:
            rows = state_sql(
                tmp_path,
                "SELECT count(*) FROM crmflow_pending WHERE status IN ('done', 'cancelled')",
            )
            return rows[0][0] == 4 - 1  # the refused call ends failed

        wait_until(ended, timeout=30)
    finally:
        assert process.stop() == 0
    names = dict(sql(tmp_path, "SELECT id, name FROM deals WHERE id IN (901, 902)"))
    assert names == {901: "one after the call", 902: "two"}
    ok = state_sql(
        tmp_path,
        "SELECT action_type, outcome FROM crmflow_history WHERE workflow = 'ok' "
        "AND outcome = 'done' ORDER BY id",
    )
    assert ok == [("webhook", "done"), ("update", "done")]
    no = state_sql(
        tmp_path,
        "SELECT action_type, outcome, detail FROM crmflow_history WHERE workflow = 'no' "
        "AND outcome IN ('failed', 'cancelled') ORDER BY id",
    )
    assert [(t, o) for t, o, _ in no] == [("webhook", "failed"), ("update", "cancelled")]
    assert no[1][2] == "an earlier action of this workflow failed"
