"""The document action: a template file beside the workflow rendered with the record
(HTML escapes CRM data), kept in the history, attached to an e-mail that a real SMTP
server receives; lint names a template file that cannot be read."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

from crmflow.crm.demo import create_demo_crm
from tests.conftest import Result, crmflow_bin
from tests.servers import MailHandler, smtp_server

Cli = Callable[..., Result]

WORKFLOW = """\
id: letter
entity: deal
trigger: {on: updated, fields: [stage]}
conditions: {stage: {changed_to: won}}
actions:
  - id: doc
    document: {template: letters/won.html.j2, name: "Order {{ deal.id }}.html"}
  - email:
      to: [buyer@customer.example]
      subject: "Your order"
      body: "Attached."
      attach: "{{ steps.doc }}"
"""
LETTER = "<h1>Thank you</h1><p>{{ deal.name }}: {{ deal.amount }} {{ deal.currency }}</p>\n"


def project(folder: Path, port: int) -> None:
    create_demo_crm(folder / "crm.db")
    (folder / "rules" / "letters").mkdir(parents=True)
    (folder / "rules" / "w.yaml").write_text(WORKFLOW)
    (folder / "rules" / "letters" / "won.html.j2").write_text(LETTER)
    (folder / "crmflow.yaml").write_text(
        "crm: sqlite:///crm.db\ntimezone: UTC\n"
        f"email: {{transport: smtp, host: 127.0.0.1, port: {port}, from: crm@example.com}}\n"
    )


EVENT = {
    "entity": "deal",
    "event": "updated",
    "record": {"id": 7, "name": "<b>Acme</b> & Co", "amount": 5, "currency": "EUR", "stage": "won"},
    "previous": {"id": 7, "stage": "negotiation"},
}


def test_a_document_is_rendered_kept_and_attached(tmp_path: Path) -> None:
    handler = MailHandler()
    with smtp_server(handler) as port:
        project(tmp_path, port)
        dry = subprocess.run(
            [crmflow_bin(), "eval", "--dry-run", "--format", "json"],
            cwd=tmp_path, input=json.dumps(EVENT), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        document = json.loads(dry.stdout)["rules"][0]["actions"][0]
        assert document["params"]["name"] == "Order 7.html"
        # CRM data in an HTML document is escaped, never markup.
        assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co: 5 EUR" in document["params"]["html"]
        assert handler.messages == []
        done = subprocess.run(
            [crmflow_bin(), "eval", "--format", "json"],
            cwd=tmp_path, input=json.dumps(EVENT), capture_output=True, text=True, timeout=60,
            env={**os.environ},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    (message,) = handler.messages
    parsed = message_from_bytes(message.content)  # type: ignore[arg-type]
    parts = [p for p in parsed.walk() if p.get_filename()]
    assert [p.get_filename() for p in parts] == ["Order 7.html"]
    assert parts[0].get_content_type() == "text/html"
    assert "&lt;b&gt;Acme&lt;/b&gt;" in parts[0].get_payload(decode=True).decode()
    history = subprocess.run(
        [crmflow_bin(), "history", "--outcome", "done", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    kept = next(r for r in json.loads(history.stdout) if r["action_type"] == "document")
    assert kept["output"]["name"] == "Order 7.html"
    assert "Thank you" in kept["output"]["content"]


def test_lint_names_a_template_file_that_cannot_be_read(
    cli: Cli, rules_dir: Callable[..., Path]
) -> None:
    rules_dir({"w.yaml": WORKFLOW.replace("won.html.j2", "lost.html.j2")})
    result = cli("lint", "rules")
    assert result.code == 1
    assert (
        "rules/w.yaml:7:26: CF227 letter: document: cannot read letters/lost.html.j2" in result.out
    )
    outside = WORKFLOW.replace("letters/won.html.j2", "../../etc/passwd")
    rules_dir({"w.yaml": outside})
    result = cli("lint", "rules")
    assert "CF227 letter: document: ../../etc/passwd is outside the workflow's folder" in result.out


def test_a_template_file_is_linted_as_templates_are(
    cli: Cli, rules_dir: Callable[..., Path], tmp_path: Path
) -> None:
    rules_dir({"w.yaml": WORKFLOW})
    letters = tmp_path / "rules" / "letters"
    letters.mkdir()
    (letters / "won.html.j2").write_text(textwrap.dedent("<p>{{ deal.nmae }}</p>\n"))
    result = cli("lint", "rules")
    assert result.code == 1
    assert "CF203 letter: nmae: deal has no field 'nmae' (did you mean 'name'?)" in result.out
