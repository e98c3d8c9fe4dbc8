"""A real `crmflow run` on Odoo's schema (PostgreSQL), as a least-privilege database role.

Stages are rows of crm_stage with translated jsonb names, the stage a foreign key; stamps
are UTC `timestamp` columns; archiving is `active = false`; Odoo's database gives no
defaults, its ORM does. The role crmflow connects as has exactly the grants the README
lists, and nothing more.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmflow.config import load_config
from crmflow.timeutil import format_utc
from tests.conftest import crmflow_bin
from tests.crmkit import Database
from tests.daemonproc import DaemonProcess, wait_until
from tests.pgserver import create_database
from tests.servers import Web

SCHEMA = Path(__file__).parent / "schemas" / "odoo.sql"
ADMIN, MARC = 2, 6  # res_users ids
DELTA, ACME_FLEET, BALTIC = 3, 2, 1  # crm_lead ids

WORKFLOWS = {
    "won.yaml": """
        id: won-handover
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: Won}}
        actions:
          - webhook: {url: WEB/won, body: {deal: "{{ deal.id }}", stage: "{{ deal.stage }}"}}
          - create: {entity: activity, values: {subject: "Kick-off: {{ deal.name }}",
                     related_entity: crm.lead, related_id: "{{ deal.id }}",
                     owner_id: "{{ deal.owner_id }}", at: "{{ now | shift('3d') | date }}"}}
    """,
    "big.yaml": """
        id: big-deal
        entity: deal
        trigger: {on: updated, fields: [amount]}
        conditions: {amount: {gte: 200000}}
        actions:
          - notify: {to: [owner], subject: "Big deal: {{ deal.name }}",
                     body: "{{ deal.amount }} EUR"}
    """,
    "qualify.yaml": """
        id: qualify-on-call
        entity: deal
        trigger: {on: updated, fields: [probability]}
        conditions: {stage: New, probability: {gte: 20}}
        actions:
          - set_stage: Qualified
    """,
    "follow-up.yaml": """
        id: quote-followup
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: Proposition}}
        actions:
          - create: {entity: activity, values: {subject: "Follow up {{ deal.name }}",
                     related_entity: crm.lead, related_id: "{{ deal.id }}",
                     owner_id: "{{ deal.owner_id }}", at: "{{ now | date }}"}}
            delay: 14d
            if: {stage: {ne: Won}}
    """,
    "dead.yaml": """
        id: archive-dead
        entity: deal
        trigger: {on: updated, fields: [probability]}
        conditions: {probability: {changed_to: 0}}
        actions:
          - delete: {}
    """,
}

# What crmflow needs on an Odoo database (README, "Running on your CRM"): read what it
# watches and reads, write what its workflows write, and crmflow_applied, created once by
# the database's owner.
GRANTS = """
CREATE ROLE crmflow LOGIN;
GRANT USAGE ON SCHEMA public TO crmflow;
GRANT SELECT ON crm_lead, crm_stage, res_users, res_partner, ir_model, mail_activity,
    sale_order TO crmflow;
GRANT INSERT, UPDATE ON crm_lead, mail_activity TO crmflow;
GRANT USAGE ON SEQUENCE mail_activity_id_seq TO crmflow;
CREATE TABLE crmflow_applied (key varchar(80) PRIMARY KEY, applied_at varchar(40) NOT NULL,
    workflow varchar(200), entity varchar(80), record_id varchar(80), result text);
GRANT SELECT, INSERT ON crmflow_applied TO crmflow;
"""


def odoo_write(db: Database, record_id: int, by: int, **values: Any) -> None:
    """Odoo's ORM write(): the values, write_date (UTC, no zone) and write_uid."""
    sets = ", ".join(f"{c} = ?" for c in values)
    db(
        f"UPDATE crm_lead SET {sets}, write_date = (now() AT TIME ZONE 'UTC'), write_uid = ? "
        "WHERE id = ?",
        *values.values(),
        by,
        record_id,
    )


def test_odoo_end_to_end_as_a_least_privilege_role(tmp_path: Path, postgres_admin: str) -> None:
    url = create_database(postgres_admin)
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA.read_text(encoding="utf-8"))
        conn.exec_driver_sql(GRANTS)
    role_url = url.replace("postgres@", "crmflow@", 1)
    profile = subprocess.run(
        [crmflow_bin(), "profile", "odoo"], capture_output=True, text=True, check=True
    ).stdout
    clock = tmp_path / "clock"
    clock.write_text(format_utc(datetime.now(UTC)))
    with Web() as web:
        (tmp_path / "crmflow.yaml").write_text(
            f"crm: {role_url}\nrules: rules/\ntimezone: Europe/Berlin\npoll_interval: 300ms\n"
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
        daemon = DaemonProcess(tmp_path, {"CRMFLOW_CLOCK_FILE": str(clock)})
        daemon.start()
        assert "at-least-once" not in daemon.log()  # crmflow_applied was there to use

        odoo_write(db, DELTA, ADMIN, stage_id=4, probability=100)  # Proposition -> Won
        odoo_write(db, ACME_FLEET, MARC, expected_revenue=250000)
        odoo_write(db, BALTIC, MARC, probability=25)  # New: qualify it
        odoo_write(db, ACME_FLEET, MARC, stage_id=3)  # Qualified -> Proposition

        # The webhook goes first, the activity after it: wait for the second.
        kickoff_sql = "SELECT count(*) FROM mail_activity WHERE summary LIKE 'Kick-off%'"
        wait_until(lambda: db(kickoff_sql)[0][0] == 1, timeout=30)
        assert web.json_bodies("/won") == [{"deal": DELTA, "stage": "Won"}]
        kickoff = db(
            "SELECT res_model, res_model_id, user_id, date_deadline, create_date, write_uid, "
            "active FROM mail_activity WHERE res_id = ? AND summary LIKE 'Kick-off%'",
            DELTA,
        )
        assert len(kickoff) == 1
        res_model, res_model_id, user_id, deadline, created, write_uid, active = kickoff[0]
        assert (res_model, res_model_id, user_id, write_uid, active) == (
            "crm.lead",
            2,
            ADMIN,
            ADMIN,
            True,
        )
        assert created is not None and created.tzinfo is None  # UTC, as Odoo keeps it
        assert abs(created - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=5)

        # The owner's "inbox": an activity assigned to Marc, on the opportunity.
        wait_until(lambda: db("SELECT count(*) FROM mail_activity WHERE summary LIKE 'Big%'")[0][0])
        big = db(
            "SELECT user_id, res_model, res_id, note, date_deadline FROM mail_activity "
            "WHERE summary = 'Big deal: Acme fleet telematics rollout'"
        )
        assert [(r[0], r[1], r[2], r[3]) for r in big] == [
            (MARC, "crm.lead", ACME_FLEET, "250000 EUR")
        ]

        # set_stage by name wrote the stage's id; Odoo's list (active leads) shows it.
        wait_until(lambda: db("SELECT stage_id FROM crm_lead WHERE id = ?", BALTIC)[0][0] == 2)
        assert db("SELECT write_uid FROM crm_lead WHERE id = ?", BALTIC) == [(MARC,)]

        # Archiving: Baltic goes to probability 0 and is archived, nothing else touched.
        before = db("SELECT * FROM crm_lead WHERE id = ?", BALTIC)[0]
        odoo_write(db, BALTIC, MARC, probability=0)
        wait_until(lambda: db("SELECT active FROM crm_lead WHERE id = ?", BALTIC)[0][0] is False)
        after = db("SELECT * FROM crm_lead WHERE id = ?", BALTIC)[0]
        names = [
            c[0]
            for c in db(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'crm_lead' "
                "ORDER BY ordinal_position"
            )
        ]
        changed = {n for n, a, b in zip(names, before, after, strict=True) if a != b}
        # (write_date may read the same: crmflow's clock here is the frozen clock file.)
        assert changed - {"write_date"} == {"probability", "active"}, changed
        assert db("SELECT count(*) FROM crm_lead WHERE active AND id = ?", BALTIC) == [(0,)]

        # Fourteen days later the proposition's follow-up comes due, after a SIGKILL.
        daemon.kill()
        clock.write_text(format_utc(datetime.now(UTC) + timedelta(days=15)))
        daemon.start()
        wait_until(
            lambda: db("SELECT count(*) FROM mail_activity WHERE summary LIKE 'Follow up%'")[0][0]
        )
        assert db("SELECT res_id FROM mail_activity WHERE summary LIKE 'Follow up%'") == [
            (ACME_FLEET,)
        ]
        assert daemon.stop() == 0
    db.dispose()

    state = Database(load_config(tmp_path / "crmflow.yaml").state_url)
    fired = Counter(
        r[0] for r in state("SELECT workflow FROM crmflow_history WHERE outcome = 'fired'")
    )
    failed = state("SELECT detail FROM crmflow_history WHERE outcome = 'failed'")
    state.dispose()
    assert fired == {
        "won-handover": 1,
        "big-deal": 1,
        "qualify-on-call": 1,
        "quote-followup": 1,
        "archive-dead": 1,
    }, fired
    assert failed == []
    assert "Traceback" not in daemon.log()
