"""The sms action against a gateway stand-in on 127.0.0.1: recipients (numbers and users'
phones), the token from the environment, idempotency keys, JSON and form bodies, retries
on 5xx, refusal on 4xx, and lint without a gateway."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from crmflow.crm.demo import create_demo_crm
from crmflow.engine.effects.sms import phone
from tests.conftest import Result, crmflow_bin
from tests.crmkit import Database
from tests.servers import Web

Cli = Callable[..., Result]

WORKFLOW = """\
id: big-deal-sms
entity: deal
trigger: {on: created}
actions:
  - sms:
      to: [owner, "+49 170 123-4567", "{{ deal.name }}"]
      text: "New deal {{ deal.name }} ({{ deal.amount }})"
"""


@pytest.fixture
def gateway() -> Iterator[Web]:
    with Web() as web:
        yield web


def project(folder: Path, gateway: Web, sms: str = "") -> None:
    create_demo_crm(folder / "crm.db")
    Database(f"sqlite:///{folder / 'crm.db'}")(
        "UPDATE users SET phone = '+4930 1111111' WHERE id = 1"
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "w.yaml").write_text(WORKFLOW)
    (folder / "crmflow.yaml").write_text(
        "crm: sqlite:///crm.db\ntimezone: UTC\nretry: {base_delay: 0s, max_attempts: 3}\n"
        f"sms: {{gateway: '{gateway.base}/send', token_env: SMS_TOKEN, from: crmflow{sms}}}\n"
    )


def evaluate(folder: Path, record: dict[str, object]) -> subprocess.CompletedProcess[str]:
    event = {"entity": "deal", "event": "created", "record": record}
    return subprocess.run(
        [crmflow_bin(), "eval", "--format", "json"],
        cwd=folder,
        input=json.dumps(event),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SMS_TOKEN": "t0ken"},
    )


def test_numbers_and_users_phones_each_get_one_message(tmp_path: Path, gateway: Web) -> None:
    project(tmp_path, gateway)
    record = {"id": 9, "name": "+44 20 7946 0958", "amount": 5, "owner_id": 1}
    result = evaluate(tmp_path, record)
    assert result.returncode == 0, result.stderr
    bodies = gateway.json_bodies("/send")
    # Numbers as written (spaces and dashes dropped), then the users' phone numbers.
    assert [b["to"] for b in bodies] == ["+491701234567", "+442079460958", "+49301111111"]
    assert {b["text"] for b in bodies} == {"New deal +44 20 7946 0958 (5)"}
    assert {b["from"] for b in bodies} == {"crmflow"}
    hits = [h for h in gateway.hits if h.path == "/send"]
    assert {h.headers["Authorization"] for h in hits} == {"Bearer t0ken"}
    keys = [h.headers["Idempotency-Key"] for h in hits]
    assert len(set(keys)) == 3 and keys == [b["reference"] for b in bodies]
    action = json.loads(result.stdout)["rules"][0]["actions"][0]
    assert action["status"] == "done"


def test_a_recipient_that_is_no_number_fails_before_anything_is_sent(
    tmp_path: Path, gateway: Web
) -> None:
    project(tmp_path, gateway)
    result = evaluate(tmp_path, {"id": 9, "name": "Acme", "amount": 5, "owner_id": 1})
    assert result.returncode == 3
    action = json.loads(result.stdout)["rules"][0]["actions"][0]
    assert action["status"] == "failed" and "'Acme' is not a recipient" in action["result"]
    assert gateway.hits == []


def test_a_busy_gateway_is_retried_and_a_refusal_is_not(tmp_path: Path, gateway: Web) -> None:
    project(tmp_path, gateway)
    gateway.script["/send"] = [(503, {}, b"busy"), (200, {}, b"{}")]
    record = {"id": 9, "name": "+4915112345678", "amount": 5}
    result = evaluate(tmp_path, record)
    assert result.returncode == 0, result.stderr
    assert "retrying" in result.stderr
    assert [b["to"] for b in gateway.json_bodies("/send")][-1] == "+4915112345678"
    gateway.hits.clear()
    gateway.script["/send"] = [(400, {}, b'{"error": "bad number"}'), (200, {}, b"{}")]
    refused = evaluate(tmp_path, {"id": 10, "name": "+4915112345678", "amount": 5})
    assert refused.returncode == 3
    # Both numbers are tried (one refusal keeps no one else from the message), and the
    # refusal is not retried.
    assert len(gateway.hits) == 2
    action = json.loads(refused.stdout)["rules"][0]["actions"][0]
    assert "HTTP 400" in action["result"] and "bad number" in action["result"]
    assert "(text message to +4915112345678)" in action["result"]


def test_a_form_body_shaped_by_the_configuration(tmp_path: Path, gateway: Web) -> None:
    project(tmp_path, gateway, ", format: form, body: {To: '{{ to }}', Body: '{{ text }}'}")
    result = evaluate(tmp_path, {"id": 9, "name": "+4915112345678", "amount": 5, "owner_id": 1})
    assert result.returncode == 0, result.stderr
    forms = [parse_qs(h.body.decode()) for h in gateway.hits if h.path == "/send"]
    assert forms[0] == {"To": ["+491701234567"], "Body": ["New deal +4915112345678 (5)"]}
    assert [f["To"] for f in forms] == [["+491701234567"], ["+4915112345678"], ["+49301111111"]]


def test_lint_wants_a_gateway(cli: Cli, rules_dir: Callable[..., Path], tmp_path: Path) -> None:
    rules_dir({"w.yaml": WORKFLOW})
    (tmp_path / "crmflow.yaml").write_text("timezone: UTC\n")
    result = cli("lint", "rules")
    assert result.code == 1
    assert "rules/w.yaml:5:5: CF226 big-deal-sms: sms needs a gateway" in result.out


@pytest.mark.parametrize(
    ("text", "number"),
    [("+49 170 123-4567", "+491701234567"), ("+1 (415) 555-0100", "+14155550100"),
     ("0170 1234567", None), ("+0123456789", None), ("call me", None)],
)  # fmt: skip
def test_phone_numbers(text: str, number: str | None) -> None:
    assert phone(text) == number
