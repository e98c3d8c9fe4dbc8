"""Running real `crmflow run` processes for the daemon benchmarks (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from crmflow.crm.demo import create_demo_crm
from tests.crmkit import write_rules

BIN = str(Path(sys.executable).parent / "crmflow")
ROOT = Path(__file__).resolve().parent.parent


def committed_code(into: Path) -> Path | None:
    """The committed `crmflow` package (git HEAD) extracted under `into`, to measure the
    code before the working tree's changes; None outside a git checkout."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "crmflow"], capture_output=True
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def project(
    folder: Path,
    crm_url: str,
    rules: str,
    *,
    state_url: str | None = None,
    poll_interval: str = "200ms",
    extra: str = "",
) -> None:
    """The demo CRM at `crm_url`, a crmflow.yaml and one workflow file in `folder`."""
    create_demo_crm(crm_url)
    state = f"state: {state_url}\n" if state_url else ""
    (folder / "crmflow.yaml").write_text(
        f"crm: {crm_url}\n{state}rules: rules/\npoll_interval: {poll_interval}\n"
        + textwrap.dedent(extra),
        encoding="utf-8",
    )
    write_rules(folder / "rules", {"w.yaml": rules})


def start(
    folder: Path, count: int = 1, *, code: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """`count` daemons in `folder`, returned once each has logged that it runs.

    `code`: a folder holding another `crmflow` package to run instead of this one (the
    committed code, for a before/after figure)."""
    env = None
    if code is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)])}
    procs, logs = [], [folder / f"d{n}.log" for n in range(count)]
    # Only what this start writes counts: a restarted daemon's log holds the last run.
    offsets = [log.stat().st_size if log.exists() else 0 for log in logs]
    for log in logs:
        with log.open("ab") as out:  # appended: a daemon restarted keeps its earlier log
            procs.append(
                subprocess.Popen(
                    [BIN, "run", "--log-format", "plain"],
                    cwd=folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    deadline = time.monotonic() + 120
    while not all(
        b"running:" in log.read_bytes()[offset:] for log, offset in zip(logs, offsets, strict=True)
    ):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop(procs)
            raise RuntimeError(f"daemons did not start: {logs[0].read_text()[-500:]}")
        time.sleep(0.05)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, as systemd stops them; SIGKILL for one that does not finish in 60 s."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers each POST after `delay` seconds and
    keeps the most requests it held at once."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.count = 0
        self.busy = 0
        self.most = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.count += 1
                    receiver.busy += 1
                    receiver.most = max(receiver.most, receiver.busy)
                time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.busy -= 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.port = int(self.server.server_address[1])


@contextmanager
def receiver(delay: float = 0.05) -> Iterator[Receiver]:
    """A running Receiver, shut down on the way out."""
    server = Receiver(delay)
    threading.Thread(target=server.server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
