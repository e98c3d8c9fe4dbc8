"""Daemons on PostgreSQL: actions per second with 1, 2 and 3 daemons, and a burst.

The actions are webhooks to a receiver on 127.0.0.1 that answers after 50 ms, so the
figure shows how daemons add up when the other side is slow. The burst is
`bench.daemon.burst` on PostgreSQL: from the commit of the updates to the last inbox row.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench import daemon, daemons

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


def actions_per_second(admin: str, count: int, actions: int, port: int) -> float:
    """Actions per second that `count` daemons carry out together."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = _database(admin)
        daemons.project(
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
            state_url=url,
            extra=f"webhooks: {{allow: ['http://127.0.0.1:{port}/*']}}\n",
        )
        procs = daemons.start(folder, count)
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
            daemons.stop(procs)
            engine.dispose()


def burst(updates: int = 2_000, runs: int = 1) -> list[dict[str, Any]]:
    """Only the burst (`runs` times, each beside the committed code), on a throw-away
    server: `python -m bench.cluster burst [UPDATES [RUNS]]`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    admin = server.start()
    try:
        return [
            daemon.burst_before_after(updates, lambda: (_database(admin),) * 2) for _ in range(runs)
        ]
    finally:
        server.stop()


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
        lag = daemon.burst_before_after(updates, lambda: (_database(admin),) * 2)
    finally:
        receiver.shutdown()
        server.stop()
    return {
        "actions": actions,
        "receiver_delay_ms": 50,
        "actions_per_s": {str(k): v for k, v in rates.items()},
        "scaling_3_vs_1": round(rates[3] / rates[1], 2),
        "burst": lag,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["burst"]:
        print(burst(*(int(a) for a in sys.argv[2:4])))
    else:
        print(measure(*(int(a) for a in sys.argv[1:3])))
