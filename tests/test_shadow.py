"""`crmflow run --shadow` against a real CRM: every change judged, every action recorded
as shadow in its own state, and nothing acts: the test's SMTP and HTTP servers hear
nothing and the CRM database is byte for byte what the application left."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmflow.crm.demo import create_demo_crm
from tests import processes
from tests.conftest import crmflow_bin
from tests.daemonproc import now_sql, wait_until
from tests.servers import MailHandler, Web, smtp_server

RULES = {
    "won.yaml": """
        id: won
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: won}}
        actions:
          - id: t
            create: {entity: task, values: {title: "Hand over {{ deal.name }}", status: open}}
          - update: {values: {probability: 100}}
          - webhook: {url: "WEB/won", body: {deal: "{{ deal.id }}", task: "{{ steps.t.id }}"}}
          - email: {to: [buyer@customer.example], subject: "Thank you"}
          - notify: {to: [owner], via: [inbox, email], subject: "Won {{ deal.name }}"}
          - sms: {to: ["+49 170 1234567"], text: "won"}
          - warn: "a day later"
            delay: 1s
        """,
}


def dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


@pytest.fixture
def servers() -> Iterator[tuple[Web, MailHandler, int]]:
    handler = MailHandler()
    with Web() as web, smtp_server(handler) as port:
        yield web, handler, port


def test_a_shadow_run_records_everything_and_acts_on_nothing(
    tmp_path: Path, servers: tuple[Web, MailHandler, int]
) -> None:
    web, mail, port = servers
    create_demo_crm(tmp_path / "crm.db")
    (tmp_path / "rules").mkdir()
    for name, text in RULES.items():
        (tmp_path / "rules" / name).write_text(textwrap.dedent(text).replace("WEB", web.base))
    (tmp_path / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///crm.db
        timezone: UTC
        poll_interval: 200ms
        email: {{transport: smtp, host: 127.0.0.1, port: {port}, from: crm@example.com}}
        webhooks: {{allow: ["{web.base}/*"]}}
        sms: {{gateway: "{web.base}/sms"}}
        """)
    )
    log = tmp_path / "shadow.log"
    daemon = processes.spawn(
        [crmflow_bin(), "run", "--shadow", "--log-format", "plain"], tmp_path, log
    )
    try:
        wait_until(lambda: "running:" in log.read_text(), timeout=30)
        with sqlite3.connect(tmp_path / "crm.db") as conn:
            conn.execute(f"UPDATE deals SET stage = 'won', updated_at = {now_sql()} WHERE id = 1")
        left = dump(tmp_path / "crm.db")
        shadow_db = tmp_path / ".crmflow" / "shadow.db"

        def shadow_rows() -> list[tuple[str, str]]:
            if not shadow_db.exists():
                return []
            with sqlite3.connect(shadow_db) as conn:
                return conn.execute(
                    "SELECT action_type, detail FROM crmflow_history WHERE outcome = 'shadow' "
                    "ORDER BY id"
                ).fetchall()

        wait_until(lambda: len(shadow_rows()) == 7, timeout=30)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    rows = shadow_rows()
    assert [r[0] for r in rows] == [
        "create", "update", "webhook", "email", "notify", "sms", "warn"
    ]  # fmt: skip
    assert rows[0][1].startswith('shadow: would create {"entity": "task"')
    assert '"url": "' + web.base + '/won"' in rows[2][1]
    # Nothing reached anyone, and the CRM is what the application left.
    assert web.hits == [] and mail.messages == []
    assert dump(tmp_path / "crm.db") == left
    assert not (tmp_path / ".crmflow" / "state.db").exists()  # the real state untouched
    text = log.read_text()
    assert "shadow run: judging every change, acting on nothing" in text
    history = subprocess.run(
        [crmflow_bin(), "history", "--shadow", "--outcome", "shadow", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(json.loads(history.stdout)) == 7, history.stderr
