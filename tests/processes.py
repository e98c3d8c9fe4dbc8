"""Daemon subprocesses that tests start, and the guarantee that none outlives its test.

A test that fails half-way never reaches its own `stop()`; a `crmflow run` left behind
keeps polling (and holding locks) long after pytest has ended. Every process started
through `spawn` is ended by the autouse fixture in conftest.py when its test finishes,
pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

_running: list[subprocess.Popen[bytes]] = []


def spawn(
    args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `args` in `cwd` with stdout and stderr appended to `log` (and `env` added to
    the environment)."""
    environ = {**os.environ, **env} if env else None
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=environ)
    _running.append(proc)
    return proc


def end_all() -> list[int]:
    """Stop every process still running: SIGTERM, then SIGKILL. Returns the pids it ended."""
    ended = []
    while _running:
        proc = _running.pop()
        if proc.poll() is not None:
            continue
        ended.append(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    return ended
