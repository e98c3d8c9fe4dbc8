"""Webhooks against a real HTTP server on 127.0.0.1: retries, signatures, refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crmflow.commands.eval_stream import run_eval
from crmflow.config import load_config
from crmflow.engine.effects.base import Services
from crmflow.engine.effects.netguard import Refused, Resolve, UrlPolicy
from crmflow.engine.effects.webhooks import secret_bytes, sign
from tests.crmkit import NOW, Project, actions, make_project
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


def test_eval_says_on_stderr_when_it_waits_to_retry(project: Project, web: Web) -> None:
    web.script["/flaky"] = [(503, {}, b""), (200, {}, b"{}")]
    project.rules({"w.yaml": hook(f"{web.base}/flaky")})
    code, _plans, err = project.eval(EVENT)
    assert code == 0
    (line,) = err.splitlines()
    assert line.startswith("crmflow: hook: webhook failed (HTTP 503") and "retrying in" in line
    assert line.endswith("(attempt 2 of 4)"), line


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


@pytest.mark.parametrize(
    "path",
    [
        "/ok/../admin",
        "/ok/%2e%2e/admin",
        "/ok/%2E%2e/admin",
        "/ok/.%2e/admin",
        "/ok//../../admin",
        "/ok/..;/admin",
        "/ok/..%3b/admin",
        "/ok/%2fadmin",
        "/ok/..\\\\admin",  # a backslash, escaped once for YAML
        "/ok/%5c..%5cadmin",
        "/../ok/x",
    ],
)
def test_the_allow_list_judges_the_path_the_server_will_serve(
    project: Project, web: Web, path: str
) -> None:
    project.configure(f"webhooks: {{allow: ['{web.base}/ok/*']}}\n")
    code, action = run(project, f"{web.base}{path}")
    assert code == 3, action
    assert action["result"].startswith("refused before connecting"), action
    assert web.hits == []


def test_an_allowed_path_is_sent_as_it_was_checked(project: Project, web: Web) -> None:
    project.configure(f"webhooks: {{allow: ['{web.base}/ok/*']}}\n")
    code, action = run(project, f"{web.base}/ok//./in/../x?a=1")
    assert code == 0, action
    assert [hit.path for hit in web.hits] == ["/ok/x?a=1"]


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


# -- DNS answers that fail, and hosts with several addresses ------------------------------
# erp.internal is allowed by name, so it may resolve to loopback addresses: 127.0.0.1 is
# the test server; nothing listens on the web port at 127.0.0.2, 127.0.0.3 or ::1.
ERP = "erp.internal"


def allow_erp(project: Project, web: Web) -> str:
    project.configure(f"webhooks: {{allow: ['http://{ERP}:{web.port}/*'], timeout: 300ms}}\n")
    return f"http://{ERP}:{web.port}"


def run_resolving(project: Project, url: str, resolve: Resolve) -> tuple[int, dict[str, object]]:
    """`run`, with a resolver that may fail (`Project.dns` can only answer)."""
    project.rules({"w.yaml": hook(url)})
    config = load_config(project.folder / "crmflow.yaml")
    services = Services(config, sleep=project.sleeps.append, resolve=resolve, clock=lambda: NOW)
    out = io.StringIO()
    code = run_eval(
        config,
        config.rules,
        io.StringIO(json.dumps(EVENT) + "\n"),
        out,
        dry_run=False,
        fmt="json",
        now="2026-11-22T10:00:00Z",
        seed=1,
        stderr=io.StringIO(),
        services=services,
    )
    (action,) = actions(json.loads(out.getvalue()), "hook")
    return code, action


def answers(*addresses: str) -> Resolve:
    def resolve(host: str, port: int) -> list[str]:
        assert host == ERP
        return list(addresses)

    return resolve


@contextmanager
def not_accepting(address: str, port: int) -> Iterator[socket.socket]:
    """A listener at `address:port` whose queue is full: a connection to it times out.

    Linux drops a SYN to a listener with a full accept queue, so the client waits in
    connect, as behind a dead host, without leaving loopback.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind((address, port))
        listener.listen(0)
        while True:
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect((address, port))
            except TimeoutError:
                break  # the queue is full now
            if len(fillers) > 16:
                pytest.skip("this system does not hold back connections to a full listener")
        yield listener
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_temporary_dns_failure_is_retried_until_the_name_resolves(
    project: Project, web: Web
) -> None:
    def resolve(host: str, port: int) -> list[str]:
        if len(project.sleeps) < 2:  # the resolver is down for the first two attempts
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return answers("127.0.0.1")(host, port)

    code, action = run_resolving(project, f"{allow_erp(project, web)}/ok", resolve)
    assert code == 0 and action["status"] == "done", action
    assert len(project.sleeps) == 2 and len(web.hits) == 1
    retried = project.state_sql(
        "SELECT detail FROM crmflow_history WHERE outcome = 'retried' ORDER BY id"
    )
    assert [detail.split(";")[0] for (detail,) in retried] == [
        f"attempt {n}: cannot resolve {ERP}: Temporary failure in name resolution" for n in (1, 2)
    ]


def test_a_host_that_does_not_exist_fails_at_once_in_one_line(project: Project, web: Web) -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    code, action = run_resolving(project, f"{allow_erp(project, web)}/ok", resolve)
    assert code == 3 and action["status"] == "failed"
    assert action["result"] == (
        f"cannot resolve {ERP}: Name or service not known (a final DNS answer: not retried)"
    )
    assert project.sleeps == [] and web.hits == []


@pytest.mark.parametrize("first", ["127.0.0.2", "::1"])
def test_when_the_first_address_refuses_the_next_one_is_called(
    project: Project, web: Web, first: str
) -> None:
    code, action = run_resolving(
        project, f"{allow_erp(project, web)}/ok", answers(first, "127.0.0.1")
    )
    assert code == 0 and action["status"] == "done", action
    assert project.sleeps == []  # one attempt: the refusal was not a failure of its own
    (hit,) = web.hits
    assert hit.headers["Host"] == f"{ERP}:{web.port}"


def test_a_connect_timeout_moves_on_to_the_next_address(project: Project, web: Web) -> None:
    with not_accepting("127.0.0.2", web.port):
        code, action = run_resolving(
            project, f"{allow_erp(project, web)}/ok", answers("127.0.0.2", "127.0.0.1")
        )
    assert code == 0 and action["status"] == "done", action
    assert project.sleeps == [] and len(web.hits) == 1


def test_when_every_address_refuses_the_attempt_is_one_transient_failure(
    project: Project, web: Web
) -> None:
    code, action = run_resolving(
        project, f"{allow_erp(project, web)}/ok", answers("127.0.0.2", "127.0.0.3")
    )
    assert code == 3 and action["status"] == "failed"
    assert action["result"] == (
        f"cannot connect to {ERP} (127.0.0.2: Connection refused; 127.0.0.3: Connection "
        "refused) (gave up after 4 attempts)"
    )
    assert len(project.sleeps) == 3  # one failure per attempt, not one per address
    assert web.hits == []


def test_a_read_timeout_does_not_try_the_next_address(project: Project, web: Web) -> None:
    web.hang = 1.0
    url = allow_erp(project, web)
    with socket.socket() as other:  # the next address would accept a connection at once
        other.bind(("127.0.0.2", web.port))
        other.listen()
        code, action = run_resolving(project, f"{url}/hang", answers("127.0.0.1", "127.0.0.2"))
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody connected
    assert code == 3
    assert action["result"] == f"no answer from {ERP} within 0.3s (gave up after 4 attempts)"
    # The request may have been received: each attempt sent it exactly once, to one address.
    assert len(web.hits) == 4 and len(project.sleeps) == 3


def test_every_resolved_address_is_checked_and_kept_in_order() -> None:
    policy = UrlPolicy([f"http://{ERP}/*"], answers("127.0.0.2", "::1", "127.0.0.2"))
    assert policy.check(f"http://{ERP}/x").addresses == ("127.0.0.2", "::1")
    # Under a wildcard one private address among public ones refuses the whole answer.
    mixed = UrlPolicy(["http://*.example.com/*"], lambda host, port: ["93.184.215.14", "10.1.2.3"])
    with pytest.raises(Refused, match=re.escape("non-public address 10.1.2.3")):
        mixed.check("http://rebind.example.com/x")
    # A name instead of an address would be looked up again while connecting.
    named = UrlPolicy([f"http://{ERP}/*"], answers("127.0.0.1", "evil.example.net"))
    with pytest.raises(Refused, match="not an address"):
        named.check(f"http://{ERP}/x")
