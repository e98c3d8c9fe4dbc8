"""A real `crmflow run` process: end to end, and SIGKILL while actions come due."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmflow.crm.database import iso_utc
from crmflow.crm.demo import create_demo_crm
from crmflow.timeutil import format_utc
from tests.conftest import ROOT, crmflow_bin
from tests.daemonproc import DaemonProcess, now_sql, sql, state_sql, wait_until
from tests.servers import Web


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


def project(folder: Path, web: Web, rules: dict[str, str]) -> DaemonProcess:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///crm.db
        rules: rules/
        timezone: Europe/Berlin
        calendar: {{country: DE, subdivision: BE}}
        poll_interval: 200ms
        email: {{transport: maildir, path: mail/}}
        webhooks: {{allow: ["{web.base}/*"], timeout: 5s}}
        retry: {{base_delay: 100ms}}
        """),
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    for name, text in rules.items():
        (folder / "rules" / name).write_text(text.replace("WEB", web.base), encoding="utf-8")
    return DaemonProcess(folder)


def test_example_workflows_end_to_end(tmp_path: Path, web: Web) -> None:
    names = [
        "big-deal-alert.yaml",
        "deal-won-webhook.yaml",
        "task-hours-exceeded.yaml",
        "project-feedback.yaml",
        "lead-junk-delete.yaml",
        "lead-converted.yaml",
    ]
    rules = {n: (ROOT / "rules" / n).read_text() for n in names}
    rules["deal-won-webhook.yaml"] = rules["deal-won-webhook.yaml"].replace(
        "https://hooks.example.com/erp/orders", "WEB/erp/orders"
    )
    daemon = project(tmp_path, web, rules)
    daemon.start()
    stamp = now_sql()
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        conn.execute(
            f"UPDATE deals SET probability = 95, updated_at = {stamp}, updated_by = 1 WHERE id = 3"
        )
        conn.execute(
            f"UPDATE deals SET stage = 'won', updated_at = {stamp}, updated_by = 2 WHERE id = 8"
        )
        conn.execute(
            f"UPDATE tasks SET logged_hours = 9, updated_at = {stamp}, updated_by = 6 WHERE id = 3"
        )
        conn.execute(f"UPDATE projects SET stage = 'feedback', updated_at = {stamp} WHERE id = 1")
        conn.execute(f"UPDATE leads SET status = 'junk', updated_at = {stamp} WHERE id = 2")
        conn.execute(f"UPDATE leads SET status = 'converted', updated_at = {stamp} WHERE id = 6")
    wait_until(
        lambda: (
            len(state_sql(tmp_path, "SELECT 1 FROM crmflow_history WHERE outcome = 'done'")) >= 8
        ),
        timeout=30,
    )
    assert sql(
        tmp_path,
        "SELECT count(*) FROM notifications WHERE related_entity = 'deal' AND related_id = 3",
    ) == [(2,)]
    assert web.json_bodies("/erp/orders")[0]["deal_id"] == 8
    assert sql(tmp_path, "SELECT status FROM tasks WHERE id = 3") == [("to_deliver",)]
    assert sql(tmp_path, "SELECT count(*) FROM leads WHERE id = 2") == [(0,)]
    assert sql(tmp_path, "SELECT count(*) FROM contacts WHERE name = 'Blue Ocean Ltd'") == [(1,)]
    mails = list((tmp_path / "mail" / "new").iterdir())
    assert any("Feedback phase: Sunrise intranet rollout" in m.read_text() for m in mails)
    assert daemon.stop() == 0
    assert "stopped" in daemon.log()


KILLED = """
id: delayed
entity: deal
trigger: {on: created}
actions:
  - update: {values: {probability: 7}}
    delay: 2s
  - webhook: {url: "WEB/seen", body: {deal: "{{ deal.id }}"}}
    delay: 2s
"""


def test_sigkill_while_200_delayed_actions_come_due(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web, {"w.yaml": KILLED})
    # At most 2 webhooks in flight when a kill comes: what a kill may repeat is bounded.
    with (tmp_path / "crmflow.yaml").open("a") as config:
        config.write("actions: {concurrency: 2, per_host: 2}\n")
    daemon.start()
    stamp = now_sql()
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        conn.execute(
            f"WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 200) "
            f"INSERT INTO deals (id, name, stage, probability, updated_at) "
            f"SELECT 5000 + v, 'batch ' || v, 'qualification', 10, {stamp} FROM n"
        )
    rng = random.Random(int(os.environ.get("CRMFLOW_KILL_SEED", "7")))
    daemon.wait_for_log("deal 5200 created")
    time.sleep(1.6)  # the first actions come due after 2 s
    for _ in range(5):
        time.sleep(rng.uniform(0.05, 0.5))
        daemon.kill()
        daemon.start()

    def settled() -> bool:
        left = state_sql(
            tmp_path, "SELECT count(*) FROM crmflow_pending WHERE status IN ('pending', 'running')"
        )[0][0]
        return left == 0

    wait_until(settled, timeout=90)
    assert daemon.stop() == 0
    # Every update landed, and each exactly once (its key is in crmflow_applied once).
    assert sql(tmp_path, "SELECT count(*) FROM deals WHERE id > 5000 AND probability = 7") == [
        (200,)
    ]
    applied = sql(tmp_path, "SELECT workflow, count(*) FROM crmflow_applied GROUP BY workflow")
    assert applied == [("delayed", 200)]
    # The receiver saw every idempotency key; repeats only for kills between send and record.
    ids = [h.headers["webhook-id"] for h in web.hits if h.path == "/seen"]
    assert len(set(ids)) == 200
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= 5 * 2, duplicates  # 5 kills, each cutting at most 2 in flight
    bodies = {int(b["deal"]) for b in web.json_bodies("/seen")}
    assert bodies == set(range(5001, 5201))
    failed = state_sql(tmp_path, "SELECT count(*) FROM crmflow_pending WHERE status = 'failed'")
    assert failed == [(0,)]


FIRST_SESSION_EVENT = json.dumps(
    {
        "entity": "deal",
        "event": "updated",
        "actor": 2,
        "record": {"id": 4, "amount": 260000, "currency": "EUR", "probability": 90},
        "previous": {"id": 4, "amount": 260000, "currency": "EUR", "probability": 85},
    }
)


def test_the_first_session_beside_a_running_daemon_acts_once(tmp_path: Path) -> None:
    """The README's first session while `make run` runs: one inbox row per user, one e-mail."""
    assert subprocess.run([crmflow_bin(), "init", "demo"], cwd=tmp_path).returncode == 0
    folder = tmp_path / "demo"
    daemon = DaemonProcess(folder)
    daemon.start()
    with sqlite3.connect(folder / "crm.db", timeout=30) as conn:
        conn.execute(
            f"UPDATE deals SET probability = 90, updated_at = {now_sql()}, updated_by = 2 "
            "WHERE id = 4"
        )

    def crmflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [crmflow_bin(), *args],
            cwd=folder,
            input=FIRST_SESSION_EVENT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    acting = crmflow("eval")
    assert acting.returncode == 2 and acting.stdout == ""
    assert acting.stderr == (
        f"crmflow: a crmflow daemon (pid {daemon.proc.pid}) is running on this CRM and acts "  # type: ignore[union-attr]
        "on its changes itself; evaluate with --dry-run, or stop the daemon first\n"
    )
    planned = crmflow("eval", "--dry-run", "--format", "json")
    assert planned.returncode == 0 and '"rule": "big-deal-alert", "matched": true' in planned.stdout

    big_deal = "SELECT user_id FROM notifications WHERE subject LIKE 'Big deal: Delta%'"
    wait_until(lambda: len(sql(folder, big_deal)) >= 2, timeout=30)
    assert daemon.stop() == 0  # work in hand finishes: nothing more can arrive after this
    assert sorted(sql(folder, big_deal)) == [(3,), (4,)]
    mails = [m.read_text() for m in (folder / "mail" / "new").iterdir()]
    assert len(mails) == 1 and "Big deal: Delta" in mails[0]


def test_a_second_daemon_on_the_same_sqlite_state_refuses(tmp_path: Path, web: Web) -> None:
    daemon = project(tmp_path, web, {"w.yaml": KILLED})
    daemon.start()
    second = subprocess.run(
        [crmflow_bin(), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 2
    assert "another crmflow daemon" in second.stderr and "pid" in second.stderr
    assert daemon.stop() == 0


def test_every_example_workflow_with_a_real_daemon(tmp_path: Path, web: Web) -> None:
    rules = {
        p.name: p.read_text()
        for p in (ROOT / "rules").glob("*.yaml")
        if not p.name.endswith(".test.yaml")
    }
    rules["deal-won-webhook.yaml"] = rules["deal-won-webhook.yaml"].replace(
        "https://hooks.example.com/erp/orders", "WEB/erp/orders"
    )
    daemon = project(tmp_path, web, rules)
    daemon.start()
    s = now_sql()
    statements = [
        f"UPDATE deals SET probability = 95, updated_at = {s}, updated_by = 1 WHERE id = 3",
        f"UPDATE deals SET stage = 'won', updated_at = {s}, updated_by = 2 WHERE id = 8",
        f"UPDATE tasks SET logged_hours = 9, updated_at = {s}, updated_by = 6 WHERE id = 3",
        f"UPDATE projects SET stage = 'feedback', updated_at = {s} WHERE id = 1",
        f"UPDATE leads SET status = 'junk', updated_at = {s} WHERE id = 2",
        f"UPDATE leads SET status = 'converted', updated_at = {s} WHERE id = 6",
        f"UPDATE leads SET status = 'qualified', updated_at = {s} WHERE id = 9",
        f"UPDATE contracts SET value = 12500, updated_at = {s} WHERE id = 1",
        f"UPDATE contracts SET status = 'active', updated_at = {s}, updated_by = 1 WHERE id = 4",
        f"UPDATE contracts SET signed_by_us = 1, updated_at = {s} WHERE id = 3",
        f"INSERT INTO quotes (id, number, status, owner_id, updated_at) "
        f"VALUES (90, 'Q-90', 'sent', 1, {s})",
        f"UPDATE quotes SET status = 'sent', updated_at = {s} WHERE status = 'draft'",
        f"UPDATE companies SET vat_id = '', updated_at = {s}, updated_by = 2 WHERE id = 2",
        f"UPDATE companies SET billing_street = 'Ring 1', updated_at = {s} WHERE id = 3",
        f"INSERT INTO cases (id, number, subject, contact_id, owner_id, updated_at) "
        f"VALUES (90, 'C-9000', 'Broken login', 4, 5, {s})",
        f"INSERT INTO deals (id, name, contact_id, owner_id, updated_at) "
        f"VALUES (90, 'Anna upsell', 1, 1, {s})",
    ]
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        for statement in statements:
            conn.execute(statement)

    def fired() -> set[str]:
        return {
            r[0]
            for r in state_sql(
                tmp_path, "SELECT workflow FROM crmflow_history WHERE outcome = 'fired'"
            )
        }

    expected = {p.removesuffix(".yaml") for p in rules} - {
        "contract-lifecycle",
        "lead-no-activity",
        "deals-gone-quiet",  # a weekday morning's schedule
    } | {"contract-welcome", "contract-anniversary"}
    wait_until(lambda: fired() >= expected, timeout=30)
    time.sleep(1)
    assert daemon.stop() == 0
    mails = "\n".join(m.read_text() for m in (tmp_path / "mail" / "new").iterdir())
    # big-deal-alert, project-feedback, contract-welcome, case-acknowledgement,
    # deal-created-followup: each e-mail went out
    for subject in (
        "Big deal: Alpenblick booking system",
        "Feedback phase: Sunrise intranet",
        "Welcome aboard: Nordwind maintenance",
        "[Case C-9000] Broken login",
        "Your enquiry: Anna upsell",
    ):
        assert subject in mails, subject
    assert web.json_bodies("/erp/orders")[0]["deal_id"] == 8
    assert sql(tmp_path, "SELECT status FROM tasks WHERE id = 3") == [("to_deliver",)]
    assert sql(tmp_path, "SELECT count(*) FROM leads WHERE id = 2") == [(0,)]
    assert sql(tmp_path, "SELECT deal_id IS NOT NULL FROM leads WHERE id = 6") == [(1,)]
    assert len(sql(tmp_path, "SELECT promo_code FROM leads WHERE id = 9")[0][0]) == 8
    assert sql(
        tmp_path, "SELECT count(*) FROM tasks WHERE title = 'Reporting: Sunrise hosting'"
    ) == [(1,)]
    assert sql(
        tmp_path, "SELECT count(*) FROM tasks WHERE title = 'Onboarding: Nordwind maintenance'"
    ) == [(1,)]
    assert sql(tmp_path, "SELECT status FROM contracts WHERE id = 3") == [("sent",)]
    assert sql(
        tmp_path, "SELECT subject FROM notifications WHERE user_id = 2 AND subject = 'Warning'"
    ) == [("Warning",)]
    assert set(sql(tmp_path, "SELECT street FROM contacts WHERE company_id = 3")) == {("Ring 1",)}
    pending = dict(
        state_sql(
            tmp_path,
            "SELECT workflow, count(*) FROM crmflow_pending WHERE "
            "status IN ('pending', 'waiting') GROUP BY workflow",
        )
    )
    assert pending["quote-followup"] == 1  # due in 14 days
    assert pending["quote-nudge"] >= 1  # two business days after a quote is sent
    assert pending["contract-anniversary"] >= 1  # a year after the start date
    # A wait and the call task behind it for the inserted deal, and again for the deal that
    # lead-converted created (a chain: crmflow's own write triggered another workflow).
    assert pending["deal-created-followup"] == 4
    assert pending["lead-no-activity"] == 1  # the next weekday 08:00
    assert pending["deals-gone-quiet"] == 1  # the next weekday 07:00
    # Deal 3 (in negotiation) changed: its owner hears in three working days, unless it
    # changes again first (mode: restart).
    assert pending["deal-negotiation-quiet"] == 1


def test_downtime_with_the_clock_moved_forward(tmp_path: Path, web: Web) -> None:
    # The demo's rows are dated by the real clock, so the daemon's clock starts there.
    start = datetime.now(UTC).replace(microsecond=0)
    clock = tmp_path / "clock"
    clock.write_text(format_utc(start))
    rules = {"q.yaml": (ROOT / "rules" / "quote-followup.yaml").read_text()}
    daemon = project(tmp_path, web, rules)
    os.environ["CRMFLOW_CLOCK_FILE"] = str(clock)
    try:
        daemon.start()
        with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
            conn.execute(
                "INSERT INTO quotes (id, number, status, updated_at) VALUES (91, 'Q-91', 'sent', ?)",
                (iso_utc(start),),
            )
        daemon.wait_for_log("quote 91 created")
        assert daemon.stop() == 0
        clock.write_text(format_utc(start + timedelta(days=27)))  # down for four weeks
        daemon.start()
        wait_until(
            lambda: (
                sql(tmp_path, "SELECT count(*) FROM tasks WHERE title = 'Follow up on quote Q-91'")
                == [(1,)]
            ),
            timeout=20,
        )
        time.sleep(1)
        assert daemon.stop() == 0
    finally:
        del os.environ["CRMFLOW_CLOCK_FILE"]
    assert sql(tmp_path, "SELECT count(*) FROM tasks WHERE title = 'Follow up on quote Q-91'") == [
        (1,)
    ]
