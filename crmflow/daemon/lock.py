"""One daemon per SQLite state, and no acting `eval` beside a running daemon.

The lock is an flock on a file beside the state database: it goes with its process
however that process ends (SIGKILL too). PostgreSQL state has no such file; there the
registry of daemons (heartbeats) says who runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from crmflow.errors import ConfigError
from crmflow.state.store import State, daemon_rows


@contextmanager
def single_daemon(state_url: str) -> Iterator[None]:
    """One daemon per SQLite state database: a second one refuses to start."""
    with _state_lock(state_url) as holder:
        if holder is not None:
            raise ConfigError(
                f"another crmflow daemon (pid {holder}) is running on this state "
                f"database; with SQLite only one may"
            )
        yield


@contextmanager
def no_daemon_beside(state_url: str, now: datetime) -> Iterator[None]:
    """`eval` acting on a CRM that a daemon watches refuses, naming the daemon.

    The daemon sees the same change in the CRM and acts on it under its own idempotency
    key (made from its snapshot of the row); eval's key comes from the event it was given.
    Both would act: two inbox rows, two e-mails. While eval runs it holds the daemon's
    lock, so a daemon starting meanwhile refuses instead.
    """
    with _state_lock(state_url, create=False) as holder:
        if holder is not None:
            raise ConfigError(
                f"a crmflow daemon (pid {holder}) is running on this CRM and acts on its "
                "changes itself; evaluate with --dry-run, or stop the daemon first"
            )
        if not state_url.startswith("sqlite:///"):
            state = State(state_url)
            try:
                running = [d for d in daemon_rows(state, now) if d["state"] == "running"]
            finally:
                state.dispose()
            if running:
                first = running[0]
                raise ConfigError(
                    f"{len(running)} crmflow daemon(s) (first: pid {first['pid']} on "
                    f"{first['host']}) run on this CRM and act on its changes themselves; "
                    "evaluate with --dry-run, or stop them first"
                )
        yield


@contextmanager
def _state_lock(state_url: str, *, create: bool = True) -> Iterator[str | None]:
    """The lock beside a SQLite state database: None when taken, else the holder's pid.

    An flock, so it goes with its process however that process ends (even SIGKILL).
    Other databases have no such file; they yield None. Without `create`, a state folder
    that does not exist yet (so no daemon ever ran there) is left unmade, unlocked.
    """
    if not state_url.startswith("sqlite:///"):
        yield None
        return
    path = Path(state_url[len("sqlite:///") :] + ".lock")
    if not create and not path.parent.is_dir():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        yield holder
        return
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield None
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
