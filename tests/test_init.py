"""`crmflow init` and a first session with the demo CRM, through the real entry point."""

from __future__ import annotations

import errno
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from crmflow.crm.demo import init_project
from crmflow.errors import ConfigError
from tests.conftest import ROOT, Result

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
    assert sorted(p.name for p in folder.iterdir()) == [
        "crm.db",
        "crmflow.yaml",
        "mail",
        "rules",
        "schemas",
    ]
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


MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.MULTILINE)


def test_every_schema_modeline_init_writes_names_a_file_there(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "demo").code == 0
    folder = tmp_path / "demo"
    targets = {}
    for path in sorted(folder.rglob("*.yaml")):
        (ref,) = MODELINE.findall(path.read_text(encoding="utf-8"))
        assert not Path(ref).is_absolute(), f"{path}: {ref} only exists on this machine"
        target = (path.parent / ref).resolve()
        assert target.is_file(), f"{path.relative_to(folder)}: $schema={ref} does not exist"
        targets[path.relative_to(folder).as_posix()] = target.relative_to(folder).as_posix()
    assert targets["crmflow.yaml"] == "schemas/config.schema.json"
    assert targets["rules/big-deal-alert.yaml"] == "schemas/workflow.schema.json"
    assert targets["rules/big-deal-alert.test.yaml"] == "schemas/test.schema.json"
    assert len(targets) == 1 + len(list((ROOT / "rules").glob("*.yaml")))
    for schema in (ROOT / "schemas").glob("*.json"):
        assert (folder / "schemas" / schema.name).read_bytes() == schema.read_bytes()


def _rules_that_fail_to_copy(tmp_path: Path) -> Path:
    """A real failure half-way: the CRM is built when copying a dangling link fails."""
    source = tmp_path / "broken-rules"
    source.mkdir()
    shutil.copyfile(ROOT / "rules" / "big-deal-alert.yaml", source / "a.yaml")
    (source / "b.yaml").symlink_to(tmp_path / "gone.yaml")
    return source


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "user-folder"])
def test_a_failed_init_leaves_nothing_behind(cli: Cli, tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "projects" / "demo"
    if existing:
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="cannot create the demo CRM"):
        init_project(folder, rules_source=_rules_that_fail_to_copy(tmp_path))
    if existing:
        assert [p.name for p in folder.iterdir()] == ["notes.txt"]
        assert (folder / "notes.txt").read_text() == "mine"
    else:
        assert not (tmp_path / "projects").exists()
    again = cli("init", "projects/demo")
    assert again.code == 0, again.err
    assert cli("lint", cwd=folder).code == 0


def test_an_init_without_its_example_files_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="example files not found"):
        init_project(tmp_path / "demo", rules_source=tmp_path / "no-such-rules")
    assert not (tmp_path / "demo").exists()


def test_a_failed_forced_init_puts_the_old_demo_back(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure strikes while the new files move in: the old CRM was already aside."""
    assert cli("init", "demo").code == 0
    folder = tmp_path / "demo"
    with sqlite3.connect(folder / "crm.db") as conn:
        conn.execute("UPDATE deals SET name = 'mine' WHERE id = 1")
    conn.close()
    config = (folder / "crmflow.yaml").read_text() + "# my note\n"
    (folder / "crmflow.yaml").write_text(config)
    (folder / ".crmflow").mkdir()
    (folder / ".crmflow" / "state.db").write_text("old state")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    real_replace = Path.replace
    moved_in = []

    def full_disk(self: Path, target: Path) -> Path:
        if self.parent.name.startswith(".crmflow-init-"):
            if Path(target).name == "crmflow.yaml":
                raise OSError(errno.ENOSPC, "No space left on device")
            moved_in.append(Path(target).name)
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", full_disk)
    with pytest.raises(ConfigError, match="No space left on device"):
        init_project(folder, force=True)
    monkeypatch.undo()
    assert moved_in == ["crm.db"]  # the new CRM was in place, and had to go again
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    with sqlite3.connect(folder / "crm.db") as conn:
        assert conn.execute("SELECT name FROM deals WHERE id = 1").fetchone()[0] == "mine"
    conn.close()
    assert (folder / "crmflow.yaml").read_text() == config
    assert (folder / ".crmflow" / "state.db").read_text() == "old state"
    assert cli("init", "demo", "--force").code == 0
    assert not (folder / ".crmflow" / "state.db").exists()


def test_init_into_a_file_fails_cleanly(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = cli("init", "taken/demo")
    assert result.code == 2
    assert result.err.startswith("crmflow: taken/demo: cannot create the demo CRM")
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
