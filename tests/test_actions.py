"""Every action against a real SQLite CRM (the demo), through `crmflow eval`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crmkit import NOW, Project, actions, make_project


@pytest.fixture
def project(tmp_path: Path, database: str) -> Iterator[Project]:
    project = make_project(tmp_path, database)
    yield project
    project.close()


def deal_event(project: Project, deal_id: int, **changes: object) -> dict[str, object]:
    row = project.sql.row("deals", deal_id)
    record = {**row, **changes}
    return {"entity": "deal", "event": "updated", "record": record, "previous": row, "actor": 2}


BIG = """
id: big
entity: deal
trigger: {on: updated}
conditions: [{amount: {gt: 100000}}]
actions:
  - notify:
      to: ["role:management", owner, actor, "someone@partner.example"]
      via: [inbox, email]
      subject: "Big deal: {{ deal.name }} at {{ deal.company.name }} ({{ deal.company.country }})"
      body: "Contact {{ deal.contact.name }}; {{ deal.company.contacts | length }} contacts"
"""


def test_notify_resolves_recipients_and_reads_relations(project: Project) -> None:
    project.rules({"w.yaml": BIG})
    code, plans, err = project.eval(deal_event(project, 4, probability=90))
    assert code == 0, err
    (action,) = actions(plans[0], "big")
    assert action["status"] == "done"
    assert (
        action["params"]["subject"]
        == "Big deal: Delta warehouse sensors at Delta Logistics BV (NL)"
    )
    assert action["params"]["body"] == "Contact Sanne de Vries; 1 contacts"
    # management (3, 4), the owner (2) and the actor (2): one inbox row each
    rows = project.sql(
        "SELECT user_id, subject, related_entity, related_id, updated_by FROM "
        "notifications WHERE related_id = 4 ORDER BY user_id"
    )
    assert [r[0] for r in rows] == [2, 3, 4]
    assert rows[0][1:] == (
        "Big deal: Delta warehouse sensors at Delta Logistics BV (NL)",
        "deal",
        4,
        2,
    )
    (mail,) = project.mails()
    assert (
        "To: priya.shah@demo-crm.example, marco.rossi@demo-crm.example, "
        "jonas.weber@demo-crm.example, someone@partner.example" in mail
    )


def test_actions_happen_once_when_the_same_event_comes_again(project: Project) -> None:
    project.rules({"w.yaml": BIG})
    event = deal_event(project, 4, probability=90)
    project.eval(event)
    code, plans, _ = project.eval(event)
    assert code == 0
    assert actions(plans[0], "big")[0]["status"] == "skipped"
    assert actions(plans[0], "big")[0]["result"].startswith("already done at")
    assert project.sql("SELECT count(*) FROM notifications WHERE related_id = 4")[0][0] == 3
    assert len(project.mails()) == 1


def test_crm_writes_are_recorded_with_their_key_in_crmflow_applied(project: Project) -> None:
    project.rules(
        {
            "w.yaml": """
        id: won
        entity: deal
        trigger: {on: updated}
        conditions: {stage: {changed_to: won}}
        actions:
          - create:
              entity: task
              values: {title: "Invoice {{ deal.name }}", status: open, related_entity: deal,
                       related_id: "{{ deal.id }}", assignee_id: "{{ deal.owner_id }}"}
        """
        }
    )
    code, plans, err = project.eval(deal_event(project, 3, stage="won"))
    assert code == 0, err
    (action,) = actions(plans[0], "won")
    task_id = int(action["result"].split()[-1])
    row = project.sql(
        "SELECT title, status, related_id, assignee_id, updated_by, created_at, "
        "updated_at FROM tasks WHERE id = ?",
        task_id,
    )[0]
    assert row[:5] == ("Invoice Alpenblick booking system", "open", 3, 1, 2)
    assert row[5] == row[6] and row[5].endswith("Z")
    applied = project.sql("SELECT workflow, entity, result FROM crmflow_applied")
    assert applied == [("won", "task", str(task_id))]


def test_create_passes_real_ids_to_later_steps(project: Project) -> None:
    project.rules(
        {"w.yaml": (Path(__file__).parent.parent / "rules" / "lead-converted.yaml").read_text()}
    )
    lead = {
        "id": 5,
        "name": "Hanse Consulting",
        "company_name": "Hanse Consulting",
        "email": "office@hanse.example",
        "status": "converted",
        "owner_id": 1,
    }
    event = {
        "entity": "lead",
        "event": "updated",
        "record": lead,
        "previous": {**lead, "status": "qualified"},
        "actor": 1,
    }
    code, _plans, err = project.eval(event)
    assert code == 0, err
    contact = project.sql("SELECT id, name, email FROM contacts ORDER BY id DESC LIMIT 1")[0]
    deal = project.sql(
        "SELECT name, contact_id, lead_id, stage FROM deals ORDER BY id DESC LIMIT 1"
    )[0]
    assert contact[1:] == ("Hanse Consulting", "office@hanse.example")
    assert deal == ("Hanse Consulting", contact[0], 5, "qualification")
    assert project.sql("SELECT contact_id FROM leads WHERE id = 5")[0][0] == contact[0]


def test_update_of_a_to_many_relation(project: Project) -> None:
    project.rules(
        {
            "w.yaml": (
                Path(__file__).parent.parent / "rules" / "company-billing-address.yaml"
            ).read_text()
        }
    )
    row = project.sql.row("companies", 1)
    moved = {
        **row,
        "billing_street": "Hafenstraße 3",
        "billing_zip": "20457",
        "billing_city": "Hamburg",
    }
    code, _plans, err = project.eval(
        {"entity": "company", "event": "updated", "record": moved, "previous": row, "actor": 1}
    )
    assert code == 0, err
    streets = project.sql("SELECT DISTINCT street, zip, city FROM contacts WHERE company_id = 1")
    assert streets == [("Hafenstraße 3", "20457", "Hamburg")]
    assert project.sql("SELECT count(*) FROM contacts WHERE company_id = 1")[0][0] == 3
    assert (
        project.sql("SELECT street FROM contacts WHERE company_id = 2")[0][0] == "12 rue de Rivoli"
    )


def test_update_of_a_to_one_relation_and_run_as(project: Project) -> None:
    project.rules(
        {
            "w.yaml": """
        id: flag
        entity: deal
        trigger: {on: updated}
        run_as: 6
        actions:
          - update: {target: company, values: {industry: "big customer"}}
        """
        }
    )
    code, _, err = project.eval(deal_event(project, 4, probability=91))
    assert code == 0, err
    assert project.sql("SELECT industry, updated_by FROM companies WHERE id = 4")[0] == (
        "big customer",
        6,
    )


@pytest.mark.parametrize(
    ("current", "target", "allow", "expected_status", "stage_after"),
    [
        ("negotiation", "won", False, "done", "won"),
        ("negotiation", "proposal", False, "skipped", "negotiation"),
        ("negotiation", "proposal", True, "done", "proposal"),
        ("negotiation", "lost", False, "done", "lost"),
        ("negotiation", "negotiation", False, "skipped", "negotiation"),
    ],
)
def test_set_stage_never_moves_back_unless_allowed(
    project: Project, current: str, target: str, allow: bool, expected_status: str, stage_after: str
) -> None:
    project.rules(
        {
            "w.yaml": f"""
        id: stage
        entity: deal
        trigger: {{on: updated}}
        actions:
          - set_stage: {{stage: {target}, allow_backward: {str(allow).lower()}}}
        """
        }
    )
    code, plans, _ = project.eval(deal_event(project, 3, probability=61))
    (action,) = actions(plans[0], "stage")
    assert action["status"] == expected_status, action
    assert project.sql("SELECT stage FROM deals WHERE id = 3")[0][0] == stage_after
    assert code == 0


def test_delete_and_soft_delete(project: Project, tmp_path: Path) -> None:
    project.rules(
        {"w.yaml": (Path(__file__).parent.parent / "rules" / "lead-junk-delete.yaml").read_text()}
    )
    lead = {"id": 1, "name": "Berg AG", "status": "junk"}
    event = {
        "entity": "lead",
        "event": "updated",
        "record": lead,
        "previous": {**lead, "status": "new"},
    }
    code, plans, _ = project.eval(event)
    assert code == 0
    assert project.sql("SELECT count(*) FROM leads WHERE id = 1")[0][0] == 0
    # With a soft-delete column, deleting marks the row instead.
    project.sql("ALTER TABLE leads ADD COLUMN archived INTEGER DEFAULT 0")
    project.configure("entities:\n  lead:\n    deleted: {column: archived, value: 1}\n")
    lead2 = {"id": 2, "name": "Kaiser Bau GmbH", "status": "junk"}
    code, _plans, _ = project.eval(
        {
            "entity": "lead",
            "event": "updated",
            "record": lead2,
            "previous": {**lead2, "status": "new"},
        }
    )
    assert project.sql("SELECT archived FROM leads WHERE id = 2")[0][0] == 1


def test_warn_writes_an_inbox_row_for_the_actor(project: Project) -> None:
    project.rules(
        {"w.yaml": (Path(__file__).parent.parent / "rules" / "company-eu-vat.yaml").read_text()}
    )
    _code, plans, _ = project.eval(
        {
            "entity": "company",
            "event": "created",
            "actor": 2,
            "record": {"id": 2, "name": "Lumière SARL", "country": "FR", "vat_id": None},
        }
    )
    (action,) = actions(plans[0], "company-eu-vat")
    assert action["status"] == "done" and "warning: Lumière SARL" in action["result"]
    assert project.sql(
        "SELECT user_id, subject FROM notifications WHERE related_entity = 'company'"
    ) == [(2, "Warning")]


def test_generate_code_uses_real_randomness(project: Project) -> None:
    project.rules(
        {
            "w.yaml": (
                Path(__file__).parent.parent / "rules" / "lead-qualified-promo.yaml"
            ).read_text()
        }
    )
    lead = {"id": 5, "name": "Hanse Consulting", "status": "qualified", "owner_id": 1}
    event = {
        "entity": "lead",
        "event": "updated",
        "record": lead,
        "previous": {**lead, "status": "contacted"},
    }
    code, _plans, err = project.eval(event)
    assert code == 0, err
    promo = project.sql("SELECT promo_code FROM leads WHERE id = 5")[0][0]
    assert len(promo) == 8
    comment = project.sql(
        "SELECT kind, subject FROM activities WHERE related_entity = 'lead' AND related_id = 5"
    )
    assert comment == [("comment", f"Promo code {promo}")]
    # activities keep the parent's last_activity_at (the demo's trigger)
    assert project.sql("SELECT last_activity_at FROM leads WHERE id = 5")[0][0] is not None


def test_delayed_and_waiting_actions_become_pending_rows(project: Project) -> None:
    project.rules(
        {
            "w.yaml": (
                Path(__file__).parent.parent / "rules" / "deal-created-followup.yaml"
            ).read_text()
        }
    )
    record = {"id": 3, "name": "Alpenblick booking system", "contact_id": 4, "owner_id": 1}
    code, plans, err = project.eval({"entity": "deal", "event": "created", "record": record})
    assert code == 0, err
    steps = actions(plans[0], "deal-created-followup")
    assert [a["status"] for a in steps] == ["done", "scheduled", "scheduled"]
    assert steps[1]["result"] == "waiting until 2026-11-25T10:00:00Z"
    rows = project.state_sql(
        "SELECT action_type, status, due_at, wait_id FROM crmflow_pending ORDER BY id"
    )
    wait_row = project.state_sql("SELECT id FROM crmflow_pending WHERE action_type = 'wait'")[0][0]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("wait", "pending", None),
        ("create", "waiting", wait_row),
    ]
    # The wait times out, and the call task is due, three days after the event.
    assert rows[0][2] == rows[1][2] == NOW.timestamp() + 3 * 86400
    (mail,) = project.mails()
    assert "To: ada.lovelace@alpenblick.example" in mail


def test_dry_run_with_a_crm_reads_relations_and_writes_nothing(project: Project) -> None:
    project.rules({"w.yaml": BIG})
    before = hashlib.sha256(project.db.read_bytes()).hexdigest() if not project.postgres else ""
    code, plans, err = project.eval(deal_event(project, 4, probability=90), dry_run=True)
    assert code == 0, err
    (action,) = actions(plans[0], "big")
    assert "status" not in action
    assert action["params"]["subject"].endswith("at Delta Logistics BV (NL)")
    if not project.postgres:
        assert hashlib.sha256(project.db.read_bytes()).hexdigest() == before
    assert not (project.folder / ".crmflow").exists()
    assert not (project.folder / "mail").exists()
    from sqlalchemy import inspect

    assert not inspect(project.sql.engine).has_table("crmflow_applied")
    assert project.sql("SELECT count(*) FROM notifications WHERE related_id = 4") == [(0,)]


def test_a_failed_action_exits_3_and_stops_the_rest_of_its_workflow(project: Project) -> None:
    project.rules(
        {
            "w.yaml": """
        id: broken
        entity: deal
        trigger: {on: updated}
        actions:
          - create: {entity: task, values: {no_such_field: 1}}
          - warn: never
        """
        }
    )
    code, plans, _ = project.eval(deal_event(project, 1, probability=30))
    assert code == 3
    first, second = actions(plans[0], "broken")
    assert first["status"] == "failed" and "task has no field 'no_such_field'" in first["result"]
    assert second["status"] == "skipped"
    history = project.state_sql(
        "SELECT outcome FROM crmflow_history WHERE workflow = 'broken' ORDER BY id"
    )
    assert [h[0] for h in history] == ["failed", "skipped", "fired"]


def test_an_action_that_cannot_be_planned_fails_and_stops_its_workflow(
    project: Project,
) -> None:
    # A template that fails on this record: the action fails, the later ones of the
    # workflow are not carried out, the others of the event are, and eval exits 3.
    project.rules(
        {
            "w.yaml": """
                id: w
                entity: deal
                trigger: {on: updated}
                actions:
                  - warn: "{{ deal.amount / 0 }}"
                  - warn: "after the failure"
                """,
            "x.yaml": """
                id: x
                entity: deal
                trigger: {on: updated}
                actions: [{warn: "another workflow"}]
                """,
        }
    )
    code, plans, err = project.eval(deal_event(project, 4, probability=90))
    assert code == 3, err
    first, second = actions(plans[0], "w")
    assert first["status"] == "failed" and "error" in first
    assert second["status"] == "skipped"
    assert second["result"] == "an earlier action of this workflow failed"
    assert actions(plans[0], "x")[0]["status"] == "done"
