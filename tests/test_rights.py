"""Database rights asked at start: each one the role lacks is one line naming the right,
the object and the workflow that needs it (README, Production)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from crmflow.crm.demo import create_demo_crm
from crmflow.crm.rights import Need, needs_of
from crmflow.rules.entities import builtin_model
from tests.conftest import Result, crmflow_bin
from tests.crmkit import Database

Cli = Callable[..., Result]

RULES = {
    "won.yaml": """\
        id: won
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: won}}
        actions:
          - create: {entity: task, values: {title: "Hand over {{ deal.name }}"}}
          - notify: {to: [owner], subject: "Won"}
        """,
    "junk.yaml": """\
        id: junk
        entity: lead
        trigger: {on: updated}
        conditions: {status: junk}
        actions: [{delete: {}}]
        """,
}


def write(folder: Path, crm: str, state: str = "", extra: str = "") -> None:
    import textwrap

    (folder / "rules").mkdir(exist_ok=True)
    for name, text in RULES.items():
        (folder / "rules" / name).write_text(textwrap.dedent(text))
    lines = [f"crm: {crm}", *([f"state: {state}"] if state else []), "timezone: UTC", extra]
    (folder / "crmflow.yaml").write_text("\n".join(lines) + "\n")


def tick(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [crmflow_bin(), "tick"], cwd=folder, capture_output=True, text=True, timeout=120
    )


def test_what_the_workflows_need(tmp_path: Path) -> None:
    from crmflow.config import Config
    from crmflow.rules.ruleset import load_ruleset

    write(tmp_path, "sqlite:///crm.db")
    rules = load_ruleset([tmp_path / "rules"], Config())
    needs = needs_of(rules.workflows, builtin_model(), ["deal", "lead"], triggers=False)
    assert {(n.obj, n.right) for n in needs} == {
        ("deals", "SELECT"),
        ("leads", "SELECT"),
        ("tasks", "INSERT"),
        ("notifications", "INSERT"),
        ("users", "SELECT"),
        ("leads", "DELETE"),
    }
    assert Need("tasks", "INSERT", "workflow won: create") in needs


@pytest.fixture
def owner_crm(postgres_admin: str) -> str:
    from tests.pgserver import create_database

    url = create_database(postgres_admin)
    create_demo_crm(url)
    return url


def _role(owner_url: str, grants: list[str]) -> str:
    base, name = owner_url.rsplit("/", 1)
    role = f"few_{name}"
    db = Database(owner_url)
    db(f'CREATE ROLE "{role}" LOGIN')
    db(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    for grant in grants:
        db(grant.format(role=f'"{role}"'))
    db.dispose()
    host = base.split("@", 1)[1]
    return f"postgresql+psycopg://{role}@{host}/{name}"


def test_missing_rights_are_one_line_each(
    owner_crm: str, postgres_admin: str, tmp_path: Path
) -> None:
    from tests.pgserver import create_database

    app = _role(owner_crm, ["GRANT SELECT ON deals, leads, users TO {role}"])
    role = app.split("://", 1)[1].split("@", 1)[0]
    state = create_database(postgres_admin)
    Database(postgres_admin)(f'ALTER DATABASE "{state.rsplit("/", 1)[1]}" OWNER TO "{role}"')
    state_app = app.rsplit("/", 1)[0] + "/" + state.rsplit("/", 1)[1]
    write(tmp_path, app, state_app)
    run = tick(tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines() == [
        f"crmflow: crm: the role {role} has no DELETE on leads (workflow junk: delete): "
        f"GRANT DELETE ON leads TO {role}",
        f"crmflow: crm: the role {role} has no INSERT on notifications (workflow won: notify): "
        f"GRANT INSERT ON notifications TO {role}",
        f"crmflow: crm: the role {role} has no INSERT on tasks (workflow won: create): "
        f"GRANT INSERT ON tasks TO {role}",
    ]


def test_triggers_mode_names_create_on_the_schema(
    owner_crm: str, postgres_admin: str, tmp_path: Path
) -> None:
    from tests.pgserver import least_privilege

    app, state = least_privilege(owner_crm)
    role = app.split("://", 1)[1].split("@", 1)[0]
    write(tmp_path, app, state, "change_capture: triggers")
    run = tick(tmp_path)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert f"crmflow: crm: the role {role} has no TRIGGER on deals" in lines[0]
    assert lines[-1] == (
        f"crmflow: crm: the role {role} has no CREATE on schema public (change_capture: "
        "triggers makes crmflow_changelog and a trigger function there): "
        f"GRANT CREATE ON SCHEMA public TO {role}"
    )
    assert "Traceback" not in run.stderr


def test_the_readme_grants_are_enough(owner_crm: str, tmp_path: Path) -> None:
    from tests.pgserver import least_privilege

    app, state = least_privilege(owner_crm)
    write(tmp_path, app, state)
    run = tick(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "at-least-once" not in run.stdout + run.stderr


def test_without_crmflow_applied_the_warning_says_what_to_do(
    owner_crm: str, postgres_admin: str, tmp_path: Path
) -> None:
    from tests.pgserver import create_database

    app = _role(
        owner_crm,
        ["GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"],
    )
    role = app.split("://", 1)[1].split("@", 1)[0]
    state = create_database(postgres_admin)
    Database(postgres_admin)(f'ALTER DATABASE "{state.rsplit("/", 1)[1]}" OWNER TO "{role}"')
    write(tmp_path, app, app.rsplit("/", 1)[0] + "/" + state.rsplit("/", 1)[1])
    run = tick(tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    assert "CRM writes are at-least-once (create crmflow_applied as the database owner" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any file")
def test_a_sqlite_crm_the_user_cannot_write(tmp_path: Path) -> None:
    create_demo_crm(tmp_path / "crm.db")
    write(tmp_path, "sqlite:///crm.db")
    (tmp_path / "crm.db").chmod(stat.S_IRUSR)
    run = tick(tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"crmflow: crm: {tmp_path / 'crm.db'} is not writable")
