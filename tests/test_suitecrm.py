"""A real `crmflow run` on SuiteCRM 7's schema, rebuilt from its vardefs (tests/schemas/).

The `suitecrm` profile maps it; five workflows typical for a SuiteCRM shop run on it; the
test writes as SuiteCRM's application does (uuid ids it makes, 'Y-m-d H:i:s' UTC stamps,
modified_user_id) and checks every row crmflow writes as SuiteCRM would read it: ids
in its form, its timestamp format, modified-by set to the actor's uuid, nothing blanked,
and found by the application's own list queries (`WHERE deleted = 0`).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import textwrap
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmflow.timeutil import format_utc
from tests.conftest import crmflow_bin
from tests.daemonproc import DaemonProcess, wait_until
from tests.servers import Web

SCHEMA = Path(__file__).parent / "schemas" / "suitecrm.sql"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")  # SuiteCRM's 'Y-m-d H:i:s'

TOM = "4468cca4-bfea-4521-b7f8-5c61069834f5"  # sales rep
PRIYA = "39ae3a24-7c36-477e-813c-d9f049c0cdc0"  # head of sales
NORTHWIND = "39ead38f-768a-4592-88a3-8cf48bcf6d0f"  # 125,000, Tom's
DELTA = "9a60f205-8937-438e-a0a2-3bd438a2e215"  # Negotiation/Review, Priya's
LEAD_NEW = "7e9f45fc-9f2c-48c2-903f-1a5d571b8ef2"  # New, Tom's
LEAD_IN_PROCESS = "033f3c83-16f3-42ef-bd83-cdb8f9ec0d64"  # In Process, Priya's

WORKFLOWS = {
    "won.yaml": """
        id: won-handover
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: Closed Won}}
        actions:
          - create:
              entity: task
              values:
                title: "Kick-off: {{ deal.name }}"
                status: Not Started
                priority: High
                due_date: "{{ now | shift('3d') | date }}"
                related_entity: Opportunities
                related_id: "{{ deal.id }}"
                assignee_id: "{{ deal.owner_id }}"
            id: t
          - webhook:
              url: WEB/won
              body: {deal: "{{ deal.id }}", company: "{{ deal.company.name }}",
                     task: "{{ steps.t.id }}"}
    """,
    "big.yaml": """
        id: big-deal
        entity: deal
        trigger: {on: updated, fields: [amount]}
        conditions: {amount: {gte: 200000}}
        actions:
          - notify: {to: [owner, PRIYA], subject: "Big deal: {{ deal.name }}",
                     body: "{{ deal.amount }} with {{ deal.company.name }}"}
    """,
    "quote.yaml": """
        id: quote-followup
        entity: quote
        trigger: {on: created}
        conditions: {status: {not_in: [Closed Accepted]}}
        actions:
          - create:
              entity: task
              values: {title: "Follow up {{ quote.name }}", status: Not Started,
                       related_entity: AOS_Quotes, related_id: "{{ quote.id }}",
                       assignee_id: "{{ quote.owner_id }}"}
            delay: 14d
    """,
    "quiet.yaml": """
        id: quiet-lead
        entity: lead
        trigger: {schedule: "0 8 * * *"}
        cooldown: 14d
        conditions:
          status: {in: [New, Assigned, In Process]}
          updated_at: {before: -5d}
        actions:
          - create:
              entity: task
              values: {title: "Call {{ lead.first_name }} {{ lead.last_name }}",
                       status: Not Started, related_entity: Leads,
                       related_id: "{{ lead.id }}", assignee_id: "{{ lead.owner_id }}"}
    """,
    "dead.yaml": """
        id: dead-lead
        entity: lead
        trigger: {on: updated, fields: [status]}
        conditions: {status: {changed_to: Dead}}
        actions:
          - delete: {}
    """,
}


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S")


class SuiteCRM:
    """The application's side: its writes, and its reads as its list views make them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def sql(self, query: str, *args: Any) -> list[sqlite3.Row]:
        with sqlite3.connect(self.path, timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute(query, args).fetchall()

    def save(self, table: str, record_id: str, by: str, **values: Any) -> None:
        """SuiteCRM's SugarBean::save: the values, date_modified and modified_user_id."""
        values |= {"date_modified": stamp(), "modified_user_id": by}
        columns = ", ".join(f"{c} = ?" for c in values)
        self.sql(f"UPDATE {table} SET {columns} WHERE id = ?", *values.values(), record_id)

    def create(self, table: str, by: str, **values: Any) -> str:
        new_id = str(uuid.uuid4())  # create_guid(): the application makes the id
        now = stamp()
        values |= {
            "id": new_id,
            "date_entered": now,
            "date_modified": now,
            "modified_user_id": by,
            "created_by": by,
            "deleted": 0,
        }
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", *values.values())
        return new_id

    def listed(self, table: str, where: str = "", *args: Any) -> list[sqlite3.Row]:
        """What a SuiteCRM list view shows: `WHERE table.deleted = 0`."""
        extra = f" AND {where}" if where else ""
        return self.sql(f"SELECT * FROM {table} WHERE {table}.deleted = 0{extra}", *args)


def project(folder: Path, web: Web) -> tuple[SuiteCRM, DaemonProcess]:
    with sqlite3.connect(folder / "crm.db") as conn:
        conn.executescript(SCHEMA.read_text(encoding="utf-8"))
    profile = subprocess.run(
        [crmflow_bin(), "profile", "suitecrm"], capture_output=True, text=True, check=True
    ).stdout
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///crm.db
        rules: rules/
        timezone: Europe/Berlin
        poll_interval: 300ms
        webhooks: {{allow: ["{web.base}/*"]}}
        """)
        + profile,
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    for name, text in WORKFLOWS.items():
        (folder / "rules" / name).write_text(
            textwrap.dedent(text).replace("WEB", web.base).replace("PRIYA", PRIYA),
            encoding="utf-8",
        )
    lint = subprocess.run([crmflow_bin(), "lint", "--strict"], cwd=folder, capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    clock = folder / "clock"
    clock.write_text(format_utc(datetime.now(UTC)))
    return SuiteCRM(folder / "crm.db"), DaemonProcess(folder, {"CRMFLOW_CLOCK_FILE": str(clock)})


def written_by_crmflow(row: sqlite3.Row, actor: str | None) -> None:
    """A row crmflow created, as SuiteCRM needs it."""
    assert UUID.match(row["id"]), row["id"]
    assert STAMP.match(row["date_entered"]) and STAMP.match(row["date_modified"]), dict(row)
    assert row["deleted"] == 0
    if actor is not None:
        assert row["modified_user_id"] == actor


def test_suitecrm_end_to_end(tmp_path: Path) -> None:
    with Web() as web:
        crm, daemon = project(tmp_path, web)
        daemon.start()
        lead_before = dict(crm.sql("SELECT * FROM leads WHERE id = ?", LEAD_NEW)[0])

        # Priya closes the Delta deal; Tom raises Northwind to 250,000; Tom writes a quote;
        # Tom marks his new lead dead.
        crm.save("opportunities", DELTA, PRIYA, sales_stage="Closed Won", probability=100)
        crm.save("opportunities", NORTHWIND, TOM, amount=250000, amount_usdollar=250000)
        quote = crm.create(
            "aos_quotes", TOM, name="Baltic reefer sensors", stage="Draft", assigned_user_id=TOM
        )
        crm.save("leads", LEAD_NEW, TOM, status="Dead")

        wait_until(lambda: len(web.json_bodies("/won")) == 1, timeout=30)
        won = web.json_bodies("/won")[0]
        kickoff = crm.listed("tasks", "parent_id = ? AND name LIKE 'Kick-off%'", DELTA)
        assert len(kickoff) == 1
        written_by_crmflow(kickoff[0], PRIYA)
        assert kickoff[0]["assigned_user_id"] == PRIYA and kickoff[0]["priority"] == "High"
        assert STAMP.match(kickoff[0]["date_due"])
        # The relation through accounts_opportunities, and a step's id in a later step.
        assert won == {"deal": DELTA, "company": "Delta Sensors GmbH", "task": kickoff[0]["id"]}

        # The owner, and a user named by her uuid: one alert in each one's bell.
        wait_until(lambda: len(crm.listed("alerts", "name LIKE 'Big deal: Northwind%'")) == 2)
        alerts = crm.listed("alerts", "name LIKE 'Big deal: Northwind%'")
        assert sorted(a["assigned_user_id"] for a in alerts) == sorted([TOM, PRIYA])
        for alert in alerts:
            written_by_crmflow(alert, TOM)
            assert alert["is_read"] == 0 and alert["description"] == "250000 with Northwind Foods"

        # The dead lead: soft-deleted as SuiteCRM deletes, nothing else touched.
        wait_until(lambda: not crm.listed("leads", "id = ?", LEAD_NEW))
        lead_after = dict(crm.sql("SELECT * FROM leads WHERE id = ?", LEAD_NEW)[0])
        assert lead_after["deleted"] == 1 and STAMP.match(lead_after["date_modified"])
        assert lead_after["modified_user_id"] == TOM
        changed = {k for k in lead_before if lead_before[k] != lead_after[k]}
        assert changed == {"status", "date_modified", "deleted"}, changed

        # A kill, a restart, and fifteen days later: the quote's follow-up and the
        # quiet lead's task (Priya's lead, untouched since 27 November).
        daemon.kill()
        (tmp_path / "clock").write_text(format_utc(datetime.now(UTC) + timedelta(days=15)))
        daemon.start()
        wait_until(lambda: len(crm.listed("tasks", "parent_type = 'AOS_Quotes'")) == 1)
        follow_up = crm.listed("tasks", "parent_type = 'AOS_Quotes'")[0]
        written_by_crmflow(follow_up, TOM)
        assert follow_up["parent_id"] == quote and follow_up["name"] == (
            "Follow up Baltic reefer sensors"
        )
        wait_until(lambda: len(crm.listed("tasks", "parent_type = 'Leads'")) >= 1)
        quiet = crm.listed("tasks", "parent_type = 'Leads'")
        assert [t["parent_id"] for t in quiet] == [LEAD_IN_PROCESS]
        written_by_crmflow(quiet[0], None)
        assert daemon.stop() == 0

    # Each change evaluated once; no failure; uuids all through the history.
    state = sqlite3.connect(tmp_path / ".crmflow" / "state.db")
    fired = Counter(
        r[0] for r in state.execute("SELECT workflow FROM crmflow_history WHERE outcome='fired'")
    )
    assert fired == {
        "won-handover": 1,
        "big-deal": 1,
        "quote-followup": 1,
        "dead-lead": 1,
        "quiet-lead": 1,
    }, fired
    outcomes = Counter(r[0] for r in state.execute("SELECT outcome FROM crmflow_history"))
    assert outcomes["failed"] == 0, outcomes
    assert "Traceback" not in daemon.log()
