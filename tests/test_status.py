"""`crmflow status` on daemons that died: gone once their heartbeat times out, never the
leader, and forgotten an hour later; with an injected clock and with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmflow.commands.control import status
from crmflow.crm.demo import create_demo_crm
from crmflow.state.store import DEFAULT_HEARTBEAT_TIMEOUT, GONE_RETENTION, State
from crmflow.timeutil import format_utc, system_clock
from tests import processes
from tests.conftest import Result, crmflow_bin
from tests.daemonkit import make_rig
from tests.pgserver import create_database

Cli = Callable[..., Result]


@dataclass
class Clock:
    """A clock the test moves; it starts at the real time, so no date is written here."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(system_clock().replace(microsecond=0))


@pytest.fixture
def state(database: str, clock: Clock) -> Iterator[State]:
    opened = State(database, clock=clock)
    yield opened
    opened.dispose()


def beat(state: State, name: str, leader: bool | None, **options: Any) -> None:
    state.heartbeat(name, "host", 1, leader, state.clock().timestamp(), **options)


def shown(state: State, clock: Clock) -> tuple[list[tuple[str, str, bool]], str | None]:
    report = status(state, clock())
    return [(d["id"], d["state"], d["leader"]) for d in report["daemons"]], report["leader"]


# -- the rules, with a clock the test moves -----------------------------------------------


def test_a_daemon_is_gone_once_its_heartbeat_is_older_than_its_timeout(
    state: State, clock: Clock
) -> None:
    beat(state, "a", True, timeout=30)
    clock.advance(30)  # exactly the timeout: not yet
    assert shown(state, clock) == ([("a", "running", True)], "a")
    clock.advance(0.1)
    assert shown(state, clock) == ([("a", "gone", False)], None)
    report = status(state, clock())
    assert report["daemons"][0]["seen_seconds_ago"] == 30.1
    assert set(report["daemons"][0]) == {"id", "host", "pid", "leader", "state", "seen_seconds_ago"}
    beat(state, "a", True, timeout=30)  # it was only slow: back, and leading again
    assert shown(state, clock) == ([("a", "running", True)], "a")


def test_each_daemon_is_judged_by_its_own_timeout(state: State, clock: Clock) -> None:
    beat(state, "quick", False, timeout=10)
    beat(state, "patient", False, timeout=120)
    beat(state, "old", False)
    with state.engine.begin() as conn:  # a row written before schema v3
        conn.exec_driver_sql("UPDATE crmflow_daemons SET heartbeat_timeout = NULL WHERE id = 'old'")
    clock.advance(DEFAULT_HEARTBEAT_TIMEOUT + 1)
    assert sorted(shown(state, clock)[0]) == [
        ("old", "gone", False),
        ("patient", "running", False),
        ("quick", "gone", False),
    ]


def test_taking_the_lead_clears_the_flag_of_the_leader_before(state: State, clock: Clock) -> None:
    beat(state, "first", True)
    beat(state, "second", False)
    clock.advance(1)
    beat(state, "second", True, took_lead=True)  # first's lock was let go: it died
    flags = {d["id"]: d["leader"] for d in state.daemons()}
    assert flags == {"first": 0, "second": 1}
    assert shown(state, clock) == (
        [("first", "running", False), ("second", "running", True)],
        "second",
    )
    beat(state, "second", None)  # a beat that leaves the flag alone
    assert {d["id"]: d["leader"] for d in state.daemons()} == flags


def test_a_stale_claim_to_the_lead_loses_to_the_fresher_beat(state: State, clock: Clock) -> None:
    # The old leader's last beat landed just after the new leader took over.
    beat(state, "new", True, took_lead=True)
    clock.advance(0.5)
    beat(state, "old", True)
    clock.advance(0.5)
    beat(state, "new", True)
    assert shown(state, clock) == ([("new", "running", True), ("old", "running", False)], "new")


def test_gone_daemons_drop_out_of_the_list_after_an_hour(state: State, clock: Clock) -> None:
    beat(state, "dead", True, timeout=30)
    clock.advance(30 + GONE_RETENTION)
    beat(state, "alive", True, took_lead=True)
    assert shown(state, clock) == ([("dead", "gone", False), ("alive", "running", True)], "alive")
    assert state.prune_daemons(clock()) == 0  # gone for exactly the hour: kept
    clock.advance(0.1)
    beat(state, "alive", True)
    # status leaves it out at once, whether or not a leader has deleted the row yet
    assert shown(state, clock) == ([("alive", "running", True)], "alive")
    assert [d["id"] for d in state.daemons()] == ["dead", "alive"]
    assert state.prune_daemons(clock()) == 1
    assert [d["id"] for d in state.daemons()] == ["alive"]


def test_the_leaders_housekeeping_deletes_daemons_gone_for_an_hour(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.rules({"a.yaml": "id: a\nentity: deal\ntrigger: {on: updated}\nactions: [{warn: a}]\n"})
    before = State(rig.state.url, clock=rig.clock)
    try:
        # A daemon killed a minute before this one started (on SQLite: the one that held
        # the lock), leading when it died.
        before.heartbeat("killed", "host", 1, True, rig.clock().timestamp(), timeout=30)
        rig.clock.advance(minutes=1)
        daemon = rig.start()  # takes the lead, so the killed one's flag goes
        assert {d["id"]: d["leader"] for d in before.daemons()} == {"killed": 0, daemon.id: 1}
        assert shown(daemon.state, rig.clock) == (
            [("killed", "gone", False), (daemon.id, "running", True)],
            daemon.id,
        )
        rig.tick(seconds=1)  # housekeeping: nothing gone for an hour yet
        assert "forgot" not in rig.out.getvalue()
        rig.tick(hours=1)
        assert "forgot 1 daemon(s) gone for over an hour" in rig.out.getvalue()
        assert [d["id"] for d in daemon.state.daemons()] == [daemon.id]
    finally:
        before.dispose()
        rig.close()


def test_a_long_tick_does_not_make_a_live_daemon_look_gone(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.rules({"a.yaml": "id: a\nentity: deal\ntrigger: {on: updated}\nactions: [{warn: a}]\n"})
    try:
        daemon = rig.start()
        daemon.heartbeat_every = 0.02
        done = threading.Event()
        beats = threading.Thread(target=daemon._beat_between_ticks, args=(done,))
        beats.start()
        try:
            moved = rig.clock.advance(minutes=5)  # five minutes inside one tick
            deadline = time.monotonic() + 10
            while daemon.state.daemons()[0]["heartbeat_at"] < moved.timestamp():
                assert time.monotonic() < deadline, "no heartbeat from the side thread"
                time.sleep(0.01)
        finally:
            done.set()
            beats.join()
        assert shown(daemon.state, rig.clock) == ([(daemon.id, "running", True)], daemon.id)
    finally:
        rig.close()


# -- real daemons, killed -----------------------------------------------------------------


class Daemons:
    """`crmflow run` processes in one folder; whatever is left is ended by the fixture."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.logs: list[Path] = []

    def start(self, expect: str = "running:") -> subprocess.Popen[bytes]:
        self.logs.append(self.folder / f"daemon-{len(self.logs)}.log")
        proc = processes.spawn(
            [crmflow_bin(), "run", "--log-format", "plain"], self.folder, self.logs[-1]
        )
        log = self.logs[-1]
        wait_for(lambda: expect in log.read_text(errors="replace"), self.text, proc)
        return proc

    def text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)


@pytest.fixture
def daemons() -> Callable[[Path], Daemons]:
    # Every process they start ends with its test (conftest's autouse fixture).
    return Daemons


def wait_for(
    check: Callable[[], bool],
    explain: Callable[[], str],
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 30,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({proc.returncode}):\n{explain()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out:\n{explain()}")
        time.sleep(0.05)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


class ClockFile:
    """The daemons' and the status command's clock (CRMFLOW_CLOCK_FILE), from real time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = system_clock().replace(microsecond=0)
        self.path.write_text(format_utc(self.now))

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        self.path.write_text(format_utc(self.now))
        return self.now


def beaten_since(state: State, pid: int, moment: datetime) -> bool:
    """Has the daemon with this pid beaten at `moment` (the clock file's time) or later?"""
    return any(d["pid"] == pid and d["heartbeat_at"] >= moment.timestamp() for d in state.daemons())


def by_pid(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {d["pid"]: d for d in report["daemons"]}


def test_a_killed_sqlite_daemon_is_shown_gone_and_its_successor_leads(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemons: Callable[[Path], Daemons]
) -> None:
    assert cli("init", "demo").code == 0
    folder = tmp_path / "demo"
    clock = ClockFile(tmp_path / "clock")
    monkeypatch.setenv("CRMFLOW_CLOCK_FILE", str(clock.path))  # for the daemons and status
    state = State(f"sqlite:///{folder / '.crmflow' / 'state.db'}")

    def report() -> dict[str, Any]:
        result = cli("status", "--format", "json", cwd=folder)
        assert result.code == 0, result.err
        return dict(json.loads(result.out))

    try:
        run = daemons(folder)
        first = run.start()
        (row,) = state.daemons()
        timeout = row["heartbeat_timeout"]
        assert (row["pid"], row["leader"], timeout) == (first.pid, 1, 30.0)
        shown_first = report()
        assert shown_first["leader"] == row["id"]
        assert by_pid(shown_first)[first.pid]["state"] == "running"

        kill(first)
        # Killed now, but by the clock its last beat is fresh: nothing can tell yet.
        assert by_pid(report())[first.pid]["state"] == "running"
        clock.advance(timeout + 1)
        after = report()
        assert after["leader"] is None
        assert after["daemons"] == [
            {
                "id": row["id"],
                "host": row["host"],
                "pid": first.pid,
                "leader": False,
                "state": "gone",
                "seen_seconds_ago": timeout + 1,
            }
        ]
        text = cli("status", cwd=folder).out
        assert f"daemon:       {row['id']} (gone, last seen {timeout + 1}s ago)" in text

        second = run.start()  # the lock is free: it starts, and leads
        now = report()
        assert now["leader"] == by_pid(now)[second.pid]["id"]
        assert by_pid(now)[second.pid]["state"] == "running"
        assert by_pid(now)[first.pid] == after["daemons"][0]  # still gone, not leading
        assert {d["pid"]: d["leader"] for d in state.daemons()} == {first.pid: 0, second.pid: 1}
        text = cli("status", cwd=folder).out
        assert f"daemon:       {now['leader']} (leader, seen 0.0s ago)" in text

        # An hour after it went, the leader's housekeeping deletes the killed one's row.
        moved = clock.advance(GONE_RETENTION + 10)
        wait_for(lambda: beaten_since(state, second.pid, moved), run.text, second)
        wait_for(lambda: len(state.daemons()) == 1, run.text, second)
        assert [d["pid"] for d in report()["daemons"]] == [second.pid]
        assert "forgot 1 daemon(s) gone for over an hour" in run.text()
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert report()["daemons"] == []  # a clean stop says goodbye
    finally:
        state.dispose()


RULE = "id: seen\nentity: deal\ntrigger: {on: created}\nactions: [{warn: seen}]\n"


def test_a_killed_postgresql_leader_is_shown_gone_and_the_survivor_leads(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_admin: str,
    daemons: Callable[[Path], Daemons],
) -> None:
    url = create_database(postgres_admin, "s")
    create_demo_crm(url)
    (tmp_path / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: {url}
        state: {url}
        rules: rules/
        poll_interval: 200ms
        """),
        encoding="utf-8",
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "seen.yaml").write_text(RULE, encoding="utf-8")
    clock = ClockFile(tmp_path / "clock")
    monkeypatch.setenv("CRMFLOW_CLOCK_FILE", str(clock.path))
    state = State(url)

    def report() -> dict[str, Any]:
        result = cli("status", "--format", "json")
        assert result.code == 0, result.err
        return dict(json.loads(result.out))

    try:
        run = daemons(tmp_path)
        leader = run.start("leading: polling")
        survivor = run.start("another daemon leads")
        before = report()
        assert before["leader"] == by_pid(before)[leader.pid]["id"]
        assert [d["state"] for d in before["daemons"]] == ["running", "running"]
        timeout = state.daemons()[0]["heartbeat_timeout"]

        kill(leader)
        wait_for(lambda: "took over the lead" in run.text(), run.text, survivor)
        taken = report()
        assert taken["leader"] == by_pid(taken)[survivor.pid]["id"]
        # The dead leader's flag was cleared by the survivor, not just hidden by status.
        assert {d["pid"]: d["leader"] for d in state.daemons()} == {
            leader.pid: 0,
            survivor.pid: 1,
        }
        assert by_pid(taken)[leader.pid]["leader"] is False

        moved = clock.advance(timeout + 1)
        wait_for(lambda: beaten_since(state, survivor.pid, moved), run.text, survivor)
        gone = report()
        assert gone["leader"] == by_pid(gone)[survivor.pid]["id"]
        assert by_pid(gone)[survivor.pid]["state"] == "running"
        assert by_pid(gone)[leader.pid] == {
            "id": by_pid(before)[leader.pid]["id"],
            "host": by_pid(before)[leader.pid]["host"],
            "pid": leader.pid,
            "leader": False,
            "state": "gone",
            "seen_seconds_ago": timeout + 1,
        }
        text = cli("status").out
        assert f"(gone, last seen {timeout + 1}s ago)" in text
        assert f"{gone['leader']} (leader, seen" in text

        clock.advance(GONE_RETENTION + 10)
        wait_for(lambda: [d["pid"] for d in state.daemons()] == [survivor.pid], run.text, survivor)
        assert [d["pid"] for d in report()["daemons"]] == [survivor.pid]
    finally:
        state.dispose()
