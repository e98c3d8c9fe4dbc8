"""Faults are not exits: a real `crmflow run` through a locked, replaced or missing CRM,
a locked state database, and a stamp outside every window.

Each test writes changes before, during and after the fault, and counts what the
daemon did with them on a real HTTP server: every change evaluated once (one request
to /seen per change), every due action done once (one request to /later each), one log
line when the fault begins, and the process still running (SIGTERM ends it cleanly).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmflow.crm.demo import create_demo_crm
from tests.daemonproc import DaemonProcess, now_sql, sql, state_sql, wait_until
from tests.dnsfault import dns_fault_env
from tests.servers import Web

SEEN = """\
id: seen
entity: deal
trigger: {on: [created, updated]}
actions:
  - webhook: {url: "WEB/seen", body: {name: "{{ deal.name }}"}}
  - webhook: {url: "WEB/later", body: {name: "{{ deal.name }}"}}
    delay: 2s
"""


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


def project(folder: Path, web: Web, extra: str = "") -> DaemonProcess:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///crm.db
        rules: rules/
        timezone: Europe/Berlin
        poll_interval: 300ms
        webhooks: {{allow: ["{web.base}/*"], timeout: 5s}}
        retry: {{base_delay: 200ms}}
        """)
        + extra,
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "seen.yaml").write_text(SEEN.replace("WEB", web.base), encoding="utf-8")
    return DaemonProcess(folder)


def rename(conn: sqlite3.Connection, deal: int, name: str, stamp: str | None = None) -> None:
    conn.execute(
        f"UPDATE deals SET name = ?, updated_at = {stamp or now_sql()} WHERE id = ?", (name, deal)
    )


def write(folder: Path, deal: int, name: str, stamp: str | None = None) -> None:
    with sqlite3.connect(folder / "crm.db", timeout=60) as conn:
        rename(conn, deal, name, stamp)


def names(web: Web, path: str) -> Counter[str]:
    return Counter(str(body["name"]) for body in web.json_bodies(path))


def settle(web: Web, expected: list[str]) -> None:
    """Wait until every change has been seen and its delayed action done, then a while
    longer (several polls) so that a repeat would show. (A delayed action renders the
    record as it is when it comes due: /later counts, /seen names.)"""
    wait_until(
        lambda: (
            set(expected) <= set(names(web, "/seen"))
            and len(web.json_bodies("/later")) >= len(expected)
        ),
        timeout=90,
    )
    time.sleep(1.5)


def faults(daemon: DaemonProcess) -> list[str]:
    return [line for line in daemon.log().splitlines() if " fault " in line]


def test_crm_locked_for_30_seconds(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web)
    daemon.start()
    write(tmp_path, 1, "before the lock")
    wait_until(lambda: "before the lock" in names(web, "/seen"))
    # The application holds the database for 30 s and writes within that transaction;
    # the delayed action of the change before it comes due meanwhile.
    lock = sqlite3.connect(tmp_path / "crm.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    rename(lock, 2, "during the lock")
    daemon.wait_for_log(" fault ", timeout=20)
    time.sleep(30)
    assert daemon.proc is not None and daemon.proc.poll() is None
    lock.execute("COMMIT")
    lock.close()
    write(tmp_path, 3, "after the lock")
    expected = ["before the lock", "during the lock", "after the lock"]
    settle(web, expected)
    assert names(web, "/seen") == Counter(expected)
    assert names(web, "/later") == Counter(expected)
    lines = faults(daemon)
    assert len(lines) == 1, daemon.log()
    assert "CRM database unavailable: database is locked" in lines[0]
    assert "recovered after" in daemon.log()
    assert "Traceback" not in daemon.log()
    assert daemon.stop() == 0


def test_crm_file_replaced_by_a_restored_backup(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web, "reconcile_interval: 1h\n")
    daemon.start()
    original = str(sql(tmp_path, "SELECT name FROM deals WHERE id = 2")[0][0])
    write(tmp_path, 1, "before the backup")
    wait_until(lambda: "before the backup" in names(web, "/seen"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(tmp_path / "crm.db") as source, sqlite3.connect(backup) as target:
        source.backup(target)
    write(tmp_path, 2, "lost with the restore")
    wait_until(lambda: "lost with the restore" in names(web, "/seen"))
    # While the file is away, the restore is made: a change stamped an hour ago (outside
    # any window: only the comparison with the snapshot finds it), then the file goes
    # back as a new file at the same path.
    (tmp_path / "crm.db").unlink()
    daemon.wait_for_log("is gone", timeout=20)
    with sqlite3.connect(backup) as conn:
        hour_ago = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')"
        rename(conn, 3, "made in the restored copy", hour_ago)
    os.replace(backup, tmp_path / "crm.db")
    daemon.wait_for_log("was replaced", timeout=20)
    write(tmp_path, 4, "after the restore")
    expected = [
        "before the backup",
        "lost with the restore",
        # The restore took deal 2 back to its old name: a change as well.
        original,
        "made in the restored copy",
        "after the restore",
    ]
    settle(web, expected)
    assert names(web, "/seen") == Counter(expected), daemon.log()
    assert len(web.json_bodies("/later")) == len(expected)
    assert len(faults(daemon)) == 1, daemon.log()
    assert "Traceback" not in daemon.log()
    assert daemon.stop() == 0


def test_state_database_locked(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web)
    daemon.start()
    write(tmp_path, 1, "before the lock")
    wait_until(lambda: "before the lock" in names(web, "/later"))
    lock = sqlite3.connect(tmp_path / ".crmflow" / "state.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    write(tmp_path, 2, "during the lock")
    daemon.wait_for_log(" fault ", timeout=40)
    time.sleep(3)
    lock.execute("COMMIT")
    lock.close()
    write(tmp_path, 3, "after the lock")
    expected = ["before the lock", "during the lock", "after the lock"]
    settle(web, expected)
    assert names(web, "/seen") == Counter(expected), daemon.log()
    assert names(web, "/later") == Counter(expected), daemon.log()
    lines = faults(daemon)
    assert len(lines) == 1 and "state database unavailable" in lines[0], daemon.log()
    assert daemon.stop() == 0


def test_sigterm_during_a_fault_stops_cleanly(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web)
    daemon.start()
    lock = sqlite3.connect(tmp_path / "crm.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        daemon.wait_for_log(" fault ", timeout=20)
        started = time.monotonic()
        assert daemon.stop() == 0
        # It does not wait for the fault to clear (a busy timeout at most).
        assert time.monotonic() - started < 15
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert "stopped" in daemon.log()


def test_a_change_stamped_a_day_behind_is_found_by_the_sweep(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web, "reconcile_interval: 2s\n")
    daemon.start()
    # A write on time first: the watermark is now, and the window reaches back 5 minutes.
    write(tmp_path, 6, "on time")
    wait_until(lambda: "on time" in names(web, "/seen"))
    day_ago = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')"
    write(tmp_path, 5, "a day behind", day_ago)
    wait_until(lambda: "a day behind" in names(web, "/seen"), timeout=30)
    # Two more sweeps pass over the same row: it is not evaluated again.
    began = state_sql(tmp_path, "SELECT value FROM crmflow_meta WHERE key = 'sweep:deal'")
    wait_until(
        lambda: (
            state_sql(tmp_path, "SELECT value FROM crmflow_meta WHERE key = 'sweep:deal'") != began
        ),
        timeout=30,
    )
    time.sleep(2.5)
    settle(web, ["a day behind", "on time"])
    assert names(web, "/seen") == Counter(["a day behind", "on time"])
    late = [line for line in daemon.log().splitlines() if "found late" in line]
    assert len(late) == 1 and "deal 5 updated" in late[0], daemon.log()
    history = state_sql(
        tmp_path, "SELECT record_id FROM crmflow_history WHERE outcome = 'found_late'"
    )
    assert history == [("5",)]
    assert daemon.stop() == 0


def test_a_missing_file_is_not_created_empty(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web)
    daemon.start()
    held = tmp_path / "held.db"
    shutil.move(tmp_path / "crm.db", held)
    daemon.wait_for_log("is gone", timeout=20)
    time.sleep(1)
    assert not (tmp_path / "crm.db").exists()  # no empty CRM in its place
    shutil.move(held, tmp_path / "crm.db")
    write(tmp_path, 1, "back again")
    wait_until(lambda: "back again" in names(web, "/seen"), timeout=30)
    assert sql(tmp_path, "SELECT name FROM deals WHERE id = 1") == [("back again",)]
    assert daemon.stop() == 0


def test_dns_failing_for_a_while(tmp_path: Path, web: Web) -> None:
    """The resolver answers EAI_AGAIN for the webhook's host for a few seconds."""
    host = "hooks.crmflow.test"
    flag = tmp_path / "dns-down"
    env = dns_fault_env(tmp_path / "site", host, flag)
    daemon = project(tmp_path, web)
    daemon.env = env
    named = web.base.replace("127.0.0.1", host)
    config = (tmp_path / "crmflow.yaml").read_text().replace(web.base, named)
    config = config.replace(
        "{base_delay: 200ms}", "{base_delay: 200ms, max_delay: 1s, max_attempts: 30}"
    )
    (tmp_path / "crmflow.yaml").write_text(config, encoding="utf-8")
    (tmp_path / "rules" / "seen.yaml").write_text(SEEN.replace("WEB", named), encoding="utf-8")
    daemon.start()
    write(tmp_path, 1, "before the outage")
    wait_until(lambda: "before the outage" in names(web, "/later"))
    flag.touch()
    write(tmp_path, 2, "during the outage")
    daemon.wait_for_log("Temporary failure in name resolution", timeout=20)
    time.sleep(3)
    assert names(web, "/seen")["during the outage"] == 0
    flag.unlink()
    write(tmp_path, 3, "after the outage")
    expected = ["before the outage", "during the outage", "after the outage"]
    settle(web, expected)
    assert names(web, "/seen") == Counter(expected), daemon.log()
    assert names(web, "/later") == Counter(expected), daemon.log()
    failed = state_sql(tmp_path, "SELECT count(*) FROM crmflow_history WHERE outcome = 'failed'")
    assert failed == [(0,)]
    assert daemon.stop() == 0


def test_postgres_server_stopped_and_started(tmp_path: Path, web: Web, postgres_admin: str) -> None:
    """A private server (the session's is shared), stopped under the daemon for a while."""
    from tests.crmkit import Database
    from tests.pgserver import PostgresServer, create_database

    server = PostgresServer()
    try:
        url = create_database(server.start())
        create_demo_crm(url)
        daemon = project(tmp_path, web)
        config = (tmp_path / "crmflow.yaml").read_text().replace("sqlite:///crm.db", url)
        (tmp_path / "crmflow.yaml").write_text(config, encoding="utf-8")
        crm = Database(url)

        def pg_write(deal: int, name: str) -> None:
            crm("UPDATE deals SET name = ? WHERE id = ?", name, deal)  # the demo stamps it
            crm.dispose()

        daemon.start()
        pg_write(1, "before the outage")
        wait_until(lambda: "before the outage" in names(web, "/seen"))
        # Its delayed action comes due while the server is down.
        server.pause()
        daemon.wait_for_log(" fault ", timeout=30)
        time.sleep(3)
        assert daemon.proc is not None and daemon.proc.poll() is None
        server.resume()
        pg_write(2, "after the outage")
        expected = ["before the outage", "after the outage"]
        settle(web, expected)
        assert names(web, "/seen") == Counter(expected), daemon.log()
        assert names(web, "/later") == Counter(expected), daemon.log()
        lines = faults(daemon)
        assert len(lines) == 1 and "CRM database unavailable" in lines[0], daemon.log()
        assert "Traceback" not in daemon.log()
        assert daemon.stop() == 0
    finally:
        server.stop()
