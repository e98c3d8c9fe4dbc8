"""The state database: versioned, migrated on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from crmflow.errors import ConfigError
from crmflow.state.store import SCHEMA_VERSION, State


def test_a_version_1_database_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:  # make it look like version 1
        conn.execute("ALTER TABLE crmflow_pending DROP COLUMN owner")
        conn.execute("ALTER TABLE crmflow_pending DROP COLUMN lease_until")
        conn.execute("DROP TABLE crmflow_daemons")
        conn.execute("UPDATE crmflow_meta SET value = '1' WHERE key = 'schema_version'")
    state = State(f"sqlite:///{path}")
    assert state.version == SCHEMA_VERSION == 5
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(crmflow_pending)")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        registry = {row[1] for row in conn.execute("PRAGMA table_info(crmflow_daemons)")}
    assert {"owner", "lease_until"} <= columns and "crmflow_daemons" in tables
    assert "heartbeat_timeout" in registry  # made whole by create_all, not added twice
    state.dispose()


def test_a_version_4_database_gains_the_digest_items(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:  # make it look like version 4
        conn.execute("DROP TABLE crmflow_digest_items")
        conn.execute("UPDATE crmflow_meta SET value = '4' WHERE key = 'schema_version'")
    state = State(f"sqlite:///{path}")
    assert state.version == 5
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "crmflow_digest_items" in tables
    state.dispose()


def test_a_version_2_database_gains_the_daemons_heartbeat_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:  # make it look like version 2, with a daemon's row
        conn.execute("ALTER TABLE crmflow_daemons DROP COLUMN heartbeat_timeout")
        conn.execute(
            "INSERT INTO crmflow_daemons (id, host, pid, started_at, heartbeat_at, leader) "
            "VALUES ('h:1:a', 'h', 1, 100.0, 100.0, 1)"
        )
        conn.execute("UPDATE crmflow_meta SET value = '2' WHERE key = 'schema_version'")
    state = State(f"sqlite:///{path}")
    assert state.version == SCHEMA_VERSION
    # The old row has no timeout of its own: the default one judges it.
    assert [(d["id"], d["heartbeat_timeout"]) for d in state.daemons()] == [("h:1:a", None)]
    state.dispose()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE crmflow_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99, newer than this crmflow"):
        State(f"sqlite:///{path}")


def test_a_sqlite_state_keeps_a_write_ahead_log(tmp_path: Path) -> None:
    # Commits append to the log instead of syncing a rollback journal each time; a
    # reader (crmflow status) opens it while the daemon writes.
    state = State(f"sqlite:///{tmp_path / 'state.db'}")
    state.set_flag("last_poll", "x")
    with state.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    state.dispose()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
