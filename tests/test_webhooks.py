"""Webhooks against a real HTTP server on 127.0.0.1: retries, signatures, refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from crmflow.engine.effects.webhooks import secret_bytes, sign
from tests.crmkit import Project, actions, make_project
from tests.servers import Web

SECRET = "whsec_" + base64.b64encode(b"a secret of 24 bytes....").decode()


def hook(url: str, body: str = "{deal_id: '{{ deal.id }}', name: '{{ deal.name }}'}") -> str:
    return f"""
id: hook
entity: deal
trigger: {{on: updated}}
actions:
  - webhook: {{url: "{url}", body: {body}, headers: {{X-Source: crmflow}}}}
"""


EVENT = {
    "entity": "deal",
    "event": "updated",
    "actor": 1,
    "record": {"id": 42, "name": "ACME", "stage": "won"},
    "previous": {"id": 42, "name": "ACME", "stage": "negotiation"},
}


@pytest.fixture
def web() -> Web:
    with Web() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, web: Web, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    p = make_project(tmp_path)
    p.configure(f"webhooks: {{allow: ['{web.base}/*'], secret_env: HOOK_SECRET, timeout: 300ms}}\n")
    return p


def run(
    project: Project, url: str, event: dict[str, object] = EVENT
) -> tuple[int, dict[str, object]]:
    project.rules({"w.yaml": hook(url)})
    code, plans, _err = project.eval(event)
    (action,) = actions(plans[0], "hook")
    return code, action


def test_200_delivers_a_signed_request(project: Project, web: Web) -> None:
    code, action = run(project, f"{web.base}/ok")
    assert code == 0 and action["status"] == "done"
    (hit,) = web.hits
    assert hit.method == "POST" and json.loads(hit.body) == {"deal_id": 42, "name": "ACME"}
    headers = {k.lower(): v for k, v in hit.headers.items()}
    assert headers["x-source"] == "crmflow"
    assert headers["host"] == f"127.0.0.1:{web.port}"
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert message_id.startswith("cf_")
    # Verify as a receiver would, with the standard's own recipe.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{message_id}.{timestamp}.".encode() + hit.body, hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert (
        sign(secret_bytes(SECRET), message_id, int(timestamp), hit.body)
        == headers["webhook-signature"]
    )


def test_the_same_event_again_is_not_sent_again(project: Project, web: Web) -> None:
    run(project, f"{web.base}/ok")
    _code, action = run(project, f"{web.base}/ok")
    assert action["status"] == "skipped" and len(web.hits) == 1


def test_500_then_200_is_retried_with_backoff(project: Project, web: Web) -> None:
    web.script["/flaky"] = [(500, {}, b"oops"), (503, {}, b""), (200, {}, b"{}")]
    code, action = run(project, f"{web.base}/flaky")
    assert code == 0 and action["status"] == "done"
    assert len(web.hits) == 3
    assert len({h.headers["webhook-id"] for h in web.hits}) == 1  # one id for every attempt
    first, second = project.sleeps
    assert 0.005 <= first <= 0.010 and 0.010 <= second <= 0.020  # 10ms, 20ms, with jitter


def test_429_honours_retry_after(project: Project, web: Web) -> None:
    web.script["/busy"] = [(429, {"Retry-After": "7"}, b""), (200, {}, b"{}")]
    code, _action = run(project, f"{web.base}/busy")
    assert code == 0 and project.sleeps == [7.0]


def test_410_fails_at_once(project: Project, web: Web) -> None:
    web.script["/gone"] = [(410, {}, b"gone for good")]
    code, action = run(project, f"{web.base}/gone")
    assert code == 3 and action["status"] == "failed"
    assert action["result"].startswith("HTTP 410")
    assert len(web.hits) == 1 and project.sleeps == []


def test_408_is_transient_and_gives_up_after_max_attempts(project: Project, web: Web) -> None:
    web.script["/slow"] = [(408, {}, b"")]
    code, action = run(project, f"{web.base}/slow")
    assert code == 3 and len(web.hits) == 4  # retry.max_attempts in the test configuration
    assert "gave up after 4 attempts" in action["result"]


def test_redirects_are_not_followed(project: Project, web: Web) -> None:
    web.script["/moved"] = [(302, {"Location": "http://10.0.0.1/internal"}, b"")]
    code, action = run(project, f"{web.base}/moved")
    assert code == 3
    assert action["result"] == "HTTP 302: redirect to http://10.0.0.1/internal not followed"
    assert [h.path for h in web.hits] == ["/moved"]


def test_a_hanging_server_times_out(project: Project, web: Web) -> None:
    web.hang = 1.0
    project.configure(f"webhooks: {{allow: ['{web.base}/*'], timeout: 200ms}}\n")
    code, action = run(project, f"{web.base}/hang")
    assert code == 3
    assert action["result"] == ("no answer from 127.0.0.1 within 0.2s (gave up after 4 attempts)")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/x",  # loopback, not the allowed one
        "http://localhost:{port}/x",  # a name for loopback
        "http://10.0.0.1/x",  # private
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://[::1]:{port}/x",  # IPv6 loopback
        "http://2130706433:{port}/x",  # 127.0.0.1 written as a decimal
        "http://0x7f000001:{port}/x",  # ... as hex
        "http://127.0.0.1.nip.example:{port}/x",
        "http://user:pw@127.0.0.1:{port}/x",  # credentials smuggled in the URL
        "file:///etc/passwd",
    ],
)
def test_ssrf_attempts_are_refused_before_connecting(project: Project, web: Web, url: str) -> None:
    code, action = run(project, url.format(port=web.port))
    assert code == 3
    assert action["result"].startswith("refused before connecting"), action
    assert web.hits == []


def test_a_wildcard_never_admits_private_addresses(project: Project, web: Web) -> None:
    project.configure("webhooks: {allow: ['http://*.example.com:*/*']}\n")
    project.dns = {"erp.example.com": ["127.0.0.1"], "rebind.example.com": ["10.1.2.3"]}
    code, action = run(project, f"http://erp.example.com:{web.port}/x")
    assert "non-public address 127.0.0.1" in action["result"]
    _code, action = run(project, "http://rebind.example.com/x")
    assert "non-public address 10.1.2.3" in action["result"]
    assert web.hits == []


def test_a_literal_host_may_be_private_and_is_called_at_the_checked_address(
    project: Project, web: Web
) -> None:
    project.configure(f"webhooks: {{allow: ['http://erp.internal:{web.port}/*']}}\n")
    project.dns = {"erp.internal": ["127.0.0.1"]}
    code, action = run(project, f"http://erp.internal:{web.port}/orders")
    assert code == 0, action
    assert web.hits[0].headers["Host"] == f"erp.internal:{web.port}"


def test_crm_data_in_the_body_is_data(project: Project, web: Web) -> None:
    event = {**EVENT, "record": {"id": 42, "name": "{{ 7*7 }}{% raw %}", "stage": "won"}}
    code, _action = run(project, f"{web.base}/ok", event)
    assert code == 0
    assert json.loads(web.hits[0].body)["name"] == "{{ 7*7 }}{% raw %}"
