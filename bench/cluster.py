"""Daemons on PostgreSQL: actions per second with 1, 2 and 3 daemons, and capture lag.

The actions are webhooks to a receiver on 127.0.0.1 that answers after 50 ms, so the
figure shows how daemons add up when the other side is slow. The lag is measured from
the commit of a burst of updates to the moment the last of them was handled.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from crmflow.demo import create_demo_crm

BIN = str(Path(sys.executable).parent / "crmflow")
STAMP = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


class _Slow(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(0.05)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _database(admin: str) -> str:
    from tests.pgserver import create_database

    return create_database(admin, "b")


def _project(folder: Path, url: str, rules: str, extra: str = "") -> None:
    create_demo_crm(url)
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: {url}
        state: {url}
        rules: rules/
        poll_interval: 200ms
        """)
        + extra,
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "w.yaml").write_text(rules, encoding="utf-8")


def _start(folder: Path, count: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(count):
        log = (folder / f"d{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [BIN, "run", "--log-format", "plain"],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 60
    while not all("running:" in (folder / f"d{n}.log").read_text() for n in range(count)):
        if time.monotonic() > deadline:
            raise RuntimeError("daemons did not start")
        time.sleep(0.1)
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def actions_per_second(admin: str, daemons: int, actions: int, port: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = _database(admin)
        _project(
            folder,
            url,
            textwrap.dedent(f"""\
            id: hook
            entity: deal
            trigger: {{on: created}}
            actions:
              - webhook: {{url: "http://127.0.0.1:{port}/in"}}
                delay: 15s
            """),
            f"webhooks: {{allow: ['http://127.0.0.1:{port}/*']}}\n",
        )
        procs = _start(folder, daemons)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"INSERT INTO deals (id, name, updated_at) SELECT 50000 + v, "
                        f"'b', {STAMP} FROM generate_series(1, {actions}) AS v"
                    )
                )
            count = "SELECT count(*) FROM crmflow_pending WHERE status = 'done'"
            started = None
            deadline = time.monotonic() + 300
            while True:
                with engine.connect() as conn:
                    done = conn.execute(text(count)).scalar_one()
                if done and started is None:
                    started = time.monotonic()
                if done >= actions:
                    return round(actions / (time.monotonic() - (started or time.monotonic())), 1)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done} of {actions} actions done")
                time.sleep(0.05)
        finally:
            _stop(procs)
            engine.dispose()


def capture_lag(admin: str, updates: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = _database(admin)
        _project(
            folder,
            url,
            textwrap.dedent("""\
            id: seen
            entity: deal
            trigger: {on: updated, fields: [probability]}
            conditions: {probability: 42}
            actions: [{update: {target: company, values: {industry: "{{ deal.id }}"}}}]
            """),
        )
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO deals (id, name, probability, updated_at) SELECT "
                    f"60000 + v, 'b', 1, '2020-01-01T00:00:00.000Z' "
                    f"FROM generate_series(1, {updates}) AS v"
                )
            )
        procs = _start(folder, 1)
        try:
            time.sleep(1)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"UPDATE deals SET probability = 42, updated_at = {STAMP} WHERE id > 60000"
                    )
                )
            committed = time.time()
            query = "SELECT count(*), max(at) FROM crmflow_history WHERE outcome = 'fired'"
            deadline = time.monotonic() + 300
            while True:
                with engine.connect() as conn:
                    fired, last = conn.execute(text(query)).one()
                if fired >= updates:
                    lag = last - committed
                    return {
                        "updates": updates,
                        "lag_last_s": round(lag, 2),
                        "changes_per_s": round(updates / lag, 1),
                    }
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {fired} of {updates} changes handled")
                time.sleep(0.2)
        finally:
            _stop(procs)
            engine.dispose()


def measure(actions: int = 600, updates: int = 10_000) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    admin = server.start()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = int(receiver.server_address[1])
    try:
        rates = {n: actions_per_second(admin, n, actions, port) for n in (1, 2, 3)}
        lag = capture_lag(admin, updates)
    finally:
        receiver.shutdown()
        server.stop()
    return {
        "actions": actions,
        "receiver_delay_ms": 50,
        "actions_per_s": {str(k): v for k, v in rates.items()},
        "scaling_3_vs_1": round(rates[3] / rates[1], 2),
        "capture": lag,
    }


if __name__ == "__main__":
    print(measure(*(int(a) for a in sys.argv[1:3])))
