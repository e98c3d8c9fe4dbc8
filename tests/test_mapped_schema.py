"""The example workflows against a CRM whose tables and columns have other names.

The schema imitates an ERP-style CRM: `crm_lead` for deals, `res_partner` for companies
and contacts' companies, `write_date`/`write_uid` for the change stamps, `active` as a
soft-delete flag. crmflow.yaml's `entities` maps the entity model onto it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.crmkit import Project, actions
from tests.servers import Web

ROOT = Path(__file__).resolve().parent.parent

DDL = """
CREATE TABLE res_users (id INTEGER PRIMARY KEY, display_name TEXT, login TEXT, x_role TEXT,
    active BOOLEAN DEFAULT 1, create_date TEXT, write_date TEXT, write_uid INTEGER);
CREATE TABLE res_partner (id INTEGER PRIMARY KEY, name TEXT, country_code TEXT, vat TEXT,
    street TEXT, zip TEXT, city TEXT, user_id INTEGER, active BOOLEAN DEFAULT 1,
    create_date TEXT, write_date TEXT, write_uid INTEGER);
CREATE TABLE res_contact (id INTEGER PRIMARY KEY, name TEXT, email TEXT, parent_id INTEGER,
    street TEXT, zip TEXT, city TEXT, country_code TEXT, create_date TEXT, write_date TEXT,
    write_uid INTEGER);
CREATE TABLE crm_lead (id INTEGER PRIMARY KEY, name TEXT, expected_revenue REAL,
    currency TEXT, probability INTEGER, stage_name TEXT, partner_id INTEGER,
    contact_id INTEGER, user_id INTEGER, active BOOLEAN DEFAULT 1, create_date TEXT,
    write_date TEXT, write_uid INTEGER);
CREATE TABLE mail_inbox (id INTEGER PRIMARY KEY, res_users_id INTEGER, subject TEXT,
    body TEXT, res_model TEXT, res_id INTEGER, create_date TEXT, write_date TEXT,
    write_uid INTEGER);
INSERT INTO res_users (id, display_name, login, x_role) VALUES
    (1, 'Lena', 'lena@erp.example', 'sales'), (3, 'Priya', 'priya@erp.example', 'management');
INSERT INTO res_partner (id, name, country_code, street, zip, city, user_id) VALUES
    (8, 'Nordwind GmbH', 'DE', 'Ostwall 8', '28195', 'Bremen', 1);
INSERT INTO res_contact (id, name, email, parent_id, street) VALUES
    (14, 'Anna Schulz', 'anna@nordwind.example', 8, 'Ostwall 8'),
    (15, 'Felix Hoffmann', 'felix@nordwind.example', 8, 'Ostwall 8');
INSERT INTO crm_lead (id, name, expected_revenue, currency, probability, stage_name,
    partner_id, contact_id, user_id) VALUES
    (42, 'Nordwind fleet', 250000, 'EUR', 90, 'negotiation', 8, 14, 1);
"""

MAPPING = """
entities:
  user:
    table: res_users
    columns: {name: display_name, email: login, role: x_role, created_at: create_date,
              updated_at: write_date, updated_by: write_uid}
  company:
    table: res_partner
    columns: {country: country_code, vat_id: vat, billing_street: street, billing_zip: zip,
              billing_city: city, billing_country: country_code, owner_id: user_id,
              created_at: create_date, updated_at: write_date, updated_by: write_uid}
    deleted: {column: active, value: false}
    relations:
      contacts: {entity: contact, foreign_key: parent_id}
  contact:
    table: res_contact
    columns: {company_id: parent_id, country: country_code, created_at: create_date,
              updated_at: write_date, updated_by: write_uid}
  deal:
    table: crm_lead
    columns: {amount: expected_revenue, stage: stage_name, company_id: partner_id,
              owner_id: user_id, created_at: create_date, updated_at: write_date,
              updated_by: write_uid}
    deleted: {column: active, value: false}
  notification:
    table: mail_inbox
    columns: {user_id: res_users_id, related_entity: res_model, related_id: res_id,
              created_at: create_date, updated_at: write_date, updated_by: write_uid}
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        conn.executescript(DDL)
    p = Project(tmp_path)
    # The example webhook's target is admitted, as a deployment using it would admit it.
    p.configure(MAPPING + 'webhooks: {allow: ["https://hooks.example.com/*"]}\n')
    names = ["big-deal-alert.yaml", "deal-won-webhook.yaml", "company-billing-address.yaml"]
    p.rules({n: (ROOT / "rules" / n).read_text() for n in names})
    return p


def test_big_deal_alert_reaches_management_through_the_mapping(project: Project) -> None:
    deal = {
        "id": 42,
        "name": "Nordwind fleet",
        "amount": 250000,
        "currency": "EUR",
        "probability": 90,
    }
    code, plans, err = project.eval(
        {
            "entity": "deal",
            "event": "updated",
            "actor": 1,
            "record": deal,
            "previous": {**deal, "amount": 90000},
        }
    )
    assert code == 0, err
    assert actions(plans[0], "big-deal-alert")[0]["status"] == "done"
    assert project.sql(
        "SELECT res_users_id, subject, res_model, res_id, write_uid, "
        "write_date IS NOT NULL FROM mail_inbox"
    ) == [(3, "Big deal: Nordwind fleet (250000 EUR)", "deal", 42, 1, 1)]
    (mail,) = project.mails()
    assert "To: priya@erp.example" in mail


def test_won_deal_webhook_reads_mapped_columns(project: Project) -> None:
    with Web() as web:
        project.configure(MAPPING + f"webhooks: {{allow: ['{web.base}/*']}}\n")
        project.rules(
            {
                "w.yaml": (ROOT / "rules" / "deal-won-webhook.yaml")
                .read_text()
                .replace("https://hooks.example.com/erp/orders", f"{web.base}/orders")
            }
        )
        deal = {
            "id": 42,
            "name": "Nordwind fleet",
            "amount": 250000,
            "currency": "EUR",
            "stage": "won",
            "company_id": 8,
            "owner_id": 1,
        }
        code, plans, err = project.eval(
            {
                "entity": "deal",
                "event": "updated",
                "record": deal,
                "previous": {**deal, "stage": "negotiation"},
            }
        )
        assert code == 0, err
        (body,) = web.json_bodies("/orders")
    assert body["deal_id"] == 42 and body["company_id"] == 8


def test_billing_address_copies_to_contacts_through_a_mapped_relation(project: Project) -> None:
    company = {
        "id": 8,
        "name": "Nordwind GmbH",
        "billing_street": "Hafenstraße 3",
        "billing_zip": "20457",
        "billing_city": "Hamburg",
        "billing_country": "DE",
        "owner_id": 1,
    }
    previous = {
        **company,
        "billing_street": "Ostwall 8",
        "billing_zip": "28195",
        "billing_city": "Bremen",
    }
    code, plans, err = project.eval(
        {
            "entity": "company",
            "event": "updated",
            "record": company,
            "previous": previous,
            "actor": 3,
        }
    )
    assert code == 0, err
    assert project.sql("SELECT street, zip, city, write_uid FROM res_contact ORDER BY id") == [
        ("Hafenstraße 3", "20457", "Hamburg", 3),
        ("Hafenstraße 3", "20457", "Hamburg", 3),
    ]
    assert project.sql("SELECT res_users_id FROM mail_inbox") == [(1,)]


def test_lint_knows_the_mapped_fields(project: Project, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("lint", cwd=project.folder)
    assert result.code == 0, result.out
