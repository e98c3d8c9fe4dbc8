"""A real `crmflow run` on Twenty's workspace schema (PostgreSQL), rebuilt from its sources.

uuid ids from the database, quoted camelCase columns in a per-workspace schema, timestamptz
stamps (under a session time zone that is not UTC), enum stages, soft delete by
"deletedAt". The application's writes are made as Twenty's server makes them; every row
crmflow writes is checked as Twenty reads it (`WHERE "deletedAt" IS NULL`).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from crmflow.config import load_config
from tests.conftest import crmflow_bin
from tests.crmkit import Database
from tests.daemonproc import DaemonProcess, wait_until
from tests.pgserver import create_database
from tests.servers import Web

SCHEMA = Path(__file__).parent / "schemas" / "twenty.sql"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
W = "workspace_test"

TOM = "5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a03"
PRIYA = "5b0c0c35-8a53-4c2d-9d0e-2f5a3d7e1a02"
DELTA = "0f3a9d2e-0003-4b6c-a7d8-9e0f1a2b3c03"  # MEETING, 260,000 EUR
NORTHWIND = "0f3a9d2e-0002-4b6c-a7d8-9e0f1a2b3c02"  # PROPOSAL, 125,000 EUR
ACME_FLEET = "0f3a9d2e-0001-4b6c-a7d8-9e0f1a2b3c01"
NORTHWIND_CO = "c0a5e1d2-0002-4e7a-9b1c-6f2d8e4a7b02"

WORKFLOWS = {
    "won.yaml": """
        id: won-handover
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: CUSTOMER}}
        actions:
          - create: {entity: task, values: {title: "Kick-off: {{ deal.name }}",
                     status: TODO, due_date: "{{ now | shift('3d') | date }}",
                     assignee_id: "{{ actor }}"}}
            id: t
          - create: {entity: task_target, values: {task_id: "{{ steps.t.id }}",
                     deal_id: "{{ deal.id }}"}}
          - webhook: {url: WEB/won, body: {deal: "{{ deal.id }}", task: "{{ steps.t.id }}",
                      company: "{{ deal.company.name }}"}}
    """,
    "big.yaml": """
        id: big-deal
        entity: deal
        trigger: {on: updated, fields: [amount_micros]}
        conditions: {amount_micros: {gte: 200000000000}}
        actions:
          - webhook: {url: WEB/big, body: {deal: "{{ deal.name }}"}}
    """,
    "gone.yaml": """
        id: deal-deleted
        entity: deal
        trigger: {on: deleted}
        actions:
          - webhook: {url: WEB/gone, body: {deal: "{{ deal.id }}"}}
    """,
    "duplicate.yaml": """
        id: drop-duplicates
        entity: company
        trigger: {on: updated, fields: [name]}
        conditions: {name: {contains: "(duplicate)"}}
        actions:
          - delete: {}
    """,
    "new-person.yaml": """
        id: call-new-contact
        entity: contact
        trigger: {on: created}
        actions:
          - create: {entity: task, values: {title: "Call {{ contact.first_name }}",
                     status: TODO}}
    """,
}


def twenty_save(db: Database, table: str, record_id: str, by: str, **values: Any) -> None:
    """Twenty's server: the values, "updatedAt" = now(), and who (a workspace member)."""
    sets = ", ".join(f'"{c}" = ?' for c in values)
    db(
        f'UPDATE {W}."{table}" SET {sets}, "updatedAt" = now(), "updatedBySource" = \'MANUAL\', '
        f'"updatedByWorkspaceMemberId" = ?, "updatedByName" = \'member\' WHERE id = ?',
        *values.values(),
        by,
        record_id,
    )


def test_twenty_end_to_end(tmp_path: Path, postgres_admin: str) -> None:
    url = create_database(postgres_admin)
    db = Database(url)
    db(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET timezone TO 'America/New_York'")
    with db.engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA.read_text(encoding="utf-8"))
    db.dispose()
    profile = subprocess.run(
        [crmflow_bin(), "profile", "twenty"], capture_output=True, text=True, check=True
    ).stdout.replace("workspace_xxx", W)
    with Web() as web:
        (tmp_path / "crmflow.yaml").write_text(
            f"crm: {url}\nrules: rules/\ntimezone: Europe/Berlin\npoll_interval: 300ms\n"
            f'webhooks: {{allow: ["{web.base}/*"]}}\n' + profile,
            encoding="utf-8",
        )
        (tmp_path / "rules").mkdir()
        for name, text in WORKFLOWS.items():
            (tmp_path / "rules" / name).write_text(
                textwrap.dedent(text).replace("WEB", web.base), encoding="utf-8"
            )
        lint = subprocess.run(
            [crmflow_bin(), "lint", "--strict"], cwd=tmp_path, capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        daemon = DaemonProcess(tmp_path)
        daemon.start()

        company_before = db(f"SELECT * FROM {W}.company WHERE id = ?", NORTHWIND_CO)[0]
        twenty_save(db, "opportunity", DELTA, PRIYA, stage="CUSTOMER")
        twenty_save(db, "opportunity", NORTHWIND, TOM, amountAmountMicros=250000000000)
        twenty_save(db, "opportunity", ACME_FLEET, TOM, deletedAt="2026-12-03T10:00:00+00:00")
        twenty_save(db, "company", NORTHWIND_CO, TOM, name="Northwind Foods (duplicate)")
        db(
            f'INSERT INTO {W}.person ("nameFirstName", "nameLastName", "companyId") '
            "VALUES ('Ola', 'Nordmann', ?)",
            NORTHWIND_CO,
        )

        wait_until(lambda: len(web.json_bodies("/won")) == 1, timeout=30)
        won = web.json_bodies("/won")[0]
        task = db(f'SELECT * FROM {W}.task WHERE id = ? AND "deletedAt" IS NULL', won["task"])
        assert len(task) == 1, won
        columns = [
            c[0]
            for c in db(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = 'task' ORDER BY ordinal_position",
                W,
            )
        ]
        row = dict(zip(columns, task[0], strict=True))
        assert UUID.match(str(row["id"])) and row["title"] == "Kick-off: Delta warehouse sensors"
        assert str(row["updatedByWorkspaceMemberId"]) == PRIYA  # the actor, as a uuid
        assert str(row["assigneeId"]) == PRIYA and row["status"] == "TODO"
        assert row["createdBySource"] == "WORKFLOW" and row["createdAt"] is not None
        target = db(f'SELECT "opportunityId" FROM {W}."taskTarget" WHERE "taskId" = ?', won["task"])
        assert [str(t[0]) for t in target] == [DELTA]
        assert won == {"deal": DELTA, "task": won["task"], "company": "Delta Sensors GmbH"}

        wait_until(lambda: len(web.json_bodies("/big")) == 1)
        wait_until(lambda: len(web.json_bodies("/gone")) == 1)
        assert web.json_bodies("/gone") == [{"deal": ACME_FLEET}]
        wait_until(
            lambda: (
                db(f'SELECT "deletedAt" FROM {W}.company WHERE id = ?', NORTHWIND_CO)[0][0]
                is not None
            )
        )
        company_after = db(f"SELECT * FROM {W}.company WHERE id = ?", NORTHWIND_CO)[0]
        company_columns = [
            c[0]
            for c in db(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = 'company' ORDER BY ordinal_position",
                W,
            )
        ]
        changed = {
            c
            for c, a, b in zip(company_columns, company_before, company_after, strict=True)
            if a != b
        }
        # The application's save (name, its stamps) and crmflow's soft delete: nothing else.
        assert changed == {"name", "updatedAt", "updatedByName", "deletedAt"}, changed
        wait_until(lambda: db(f"SELECT count(*) FROM {W}.task WHERE title = 'Call Ola'")[0][0] == 1)

        # A kill and a restart: nothing repeats, nothing crashes on uuid ids.
        daemon.kill()
        daemon.start()
        twenty_save(db, "opportunity", NORTHWIND, TOM, stage="CUSTOMER")
        wait_until(lambda: len(web.json_bodies("/won")) == 2, timeout=30)
        assert daemon.stop() == 0
    db.dispose()

    config = load_config(tmp_path / "crmflow.yaml")
    state = Database(config.state_url)
    fired = Counter(
        r[0] for r in state("SELECT workflow FROM crmflow_history WHERE outcome = 'fired'")
    )
    assert fired == {
        "won-handover": 2,
        "big-deal": 1,
        "deal-deleted": 1,
        "drop-duplicates": 1,
        "call-new-contact": 1,
    }, fired
    failed = state("SELECT detail FROM crmflow_history WHERE outcome = 'failed'")
    state.dispose()
    assert failed == []
    assert "Traceback" not in daemon.log()
