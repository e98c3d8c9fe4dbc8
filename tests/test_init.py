"""`crmflow init` and a first session with the demo CRM, through the real entry point."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Result

Cli = Callable[..., Result]

SPEC_COLUMNS = {
    "deals": {
        "name",
        "amount",
        "currency",
        "probability",
        "stage",
        "company_id",
        "contact_id",
        "owner_id",
        "last_activity_at",
    },
    "leads": {"name", "email", "status", "owner_id", "last_activity_at"},
    "tasks": {"title", "status", "assignee_id", "due_date", "estimated_hours", "logged_hours"},
    "activities": {"kind", "subject", "at", "related_entity", "related_id", "owner_id"},
    "notifications": {"user_id", "subject", "body", "created_at", "read_at"},
    "users": {"name", "email", "role"},
}
TABLES = [
    "users",
    "companies",
    "contacts",
    "leads",
    "deals",
    "quotes",
    "projects",
    "tasks",
    "activities",
    "contracts",
    "cases",
    "notifications",
]


def test_init_creates_the_demo_crm(cli: Cli, tmp_path: Path) -> None:
    result = cli("init", "demo")
    assert result.code == 0, result.err
    folder = tmp_path / "demo"
    with sqlite3.connect(folder / "crm.db") as conn:
        for table in TABLES:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            assert {"id", "created_at", "updated_at", "updated_by"} <= columns, table
            assert SPEC_COLUMNS.get(table, set()) <= columns, table
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        stages = {r[0] for r in conn.execute("SELECT DISTINCT stage FROM deals")}
        assert stages == {"qualification", "proposal", "negotiation", "won", "lost"}
        roles = {r[0] for r in conn.execute("SELECT role FROM users")}
        assert {"sales", "management", "support"} <= roles
        countries = {r[0] for r in conn.execute("SELECT country FROM companies")}
        assert len(countries) >= 5
        assert all("@" in r[0] for r in conn.execute("SELECT email FROM users"))
    assert (folder / "crmflow.yaml").is_file() and (folder / "mail").is_dir()
    assert len(list((folder / "rules").glob("*.yaml"))) >= 30
    assert cli("lint", cwd=folder).code == 0


def test_init_refuses_to_overwrite_unless_forced(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "demo").code == 0
    with sqlite3.connect(tmp_path / "demo" / "crm.db") as conn:
        conn.execute("UPDATE deals SET name = 'mine' WHERE id = 1")
    again = cli("init", "demo")
    assert again.code == 2
    assert "already exist" in again.err and "--force" in again.err
    with sqlite3.connect(tmp_path / "demo" / "crm.db") as conn:
        assert conn.execute("SELECT name FROM deals WHERE id = 1").fetchone()[0] == "mine"
    assert cli("init", "demo", "--force").code == 0
    with sqlite3.connect(tmp_path / "demo" / "crm.db") as conn:
        assert conn.execute("SELECT name FROM deals WHERE id = 1").fetchone()[0] != "mine"


def test_a_first_session(cli: Cli, tmp_path: Path) -> None:
    """The README's walk-through: init, change a deal with SQL, eval the event."""
    assert cli("init", "demo").code == 0
    folder = tmp_path / "demo"
    with sqlite3.connect(folder / "crm.db") as conn:
        conn.execute("UPDATE deals SET probability = 90, updated_by = 2 WHERE id = 4")
    event = {
        "entity": "deal",
        "event": "updated",
        "actor": 2,
        "record": {
            "id": 4,
            "name": "Delta warehouse sensors",
            "amount": 260000,
            "currency": "EUR",
            "probability": 90,
            "stage": "negotiation",
        },
        "previous": {
            "id": 4,
            "name": "Delta warehouse sensors",
            "amount": 260000,
            "currency": "EUR",
            "probability": 85,
            "stage": "negotiation",
        },
    }
    dry = cli("eval", "--dry-run", "--format", "json", stdin=json.dumps(event), cwd=folder)
    assert dry.code == 0 and not (folder / ".crmflow").exists()
    result = cli("eval", "--format", "json", stdin=json.dumps(event), cwd=folder)
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    alert = next(r for r in plan["rules"] if r["rule"] == "big-deal-alert")
    assert alert["actions"][0]["status"] == "done"
    with sqlite3.connect(folder / "crm.db") as conn:
        inbox = conn.execute(
            "SELECT user_id, subject FROM notifications WHERE related_id = 4 ORDER BY user_id"
        ).fetchall()
    assert inbox == [
        (3, "Big deal: Delta warehouse sensors (260000 EUR)"),
        (4, "Big deal: Delta warehouse sensors (260000 EUR)"),
    ]
    (mail,) = list((folder / "mail" / "new").iterdir())
    assert "Subject: Big deal: Delta warehouse sensors (260000 EUR)" in mail.read_text()
    text = cli("eval", stdin=json.dumps(event), cwd=folder)
    assert "skipped: already done at" in text.out
