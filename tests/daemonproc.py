"""A real `crmflow run` process in a project folder, and plain SQL beside it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests import processes
from tests.conftest import crmflow_bin


class DaemonProcess:
    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.proc = processes.spawn(
            [crmflow_bin(), "run", "--log-format", "plain"],
            self.folder,
            self.folder / f"daemon-{self.runs}.log",
            self.env,
        )
        self.wait_for_log("running:")

    def log(self) -> str:
        return (self.folder / f"daemon-{self.runs}.log").read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            assert self.proc is not None and self.proc.poll() is None, self.log()
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the log:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def sql(folder: Path, query: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "crm.db", timeout=30) as conn:
        return conn.execute(query, args).fetchall()


def state_sql(folder: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / ".crmflow" / "state.db", timeout=30) as conn:
        return conn.execute(query).fetchall()


def wait_until(check: object, timeout: float = 60, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(every)
    raise AssertionError("timed out waiting")


def now_sql() -> str:
    return "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
