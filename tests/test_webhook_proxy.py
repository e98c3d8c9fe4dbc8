"""Webhooks through `webhooks.proxy`: a real proxy (tests/httpproxy.py) and real receivers
on 127.0.0.1, over plain HTTP and through a CONNECT tunnel to a TLS receiver.

The target is judged before the proxy hears of it, the proxy's password shows nowhere,
and a proxy that is down is a failure that passes.
"""

from __future__ import annotations

import io
import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crmflow.commands.eval_stream import run_eval
from crmflow.config import load_config
from crmflow.engine.effects.base import Services
from crmflow.errors import ConfigError
from crmflow.urls import masked, proxy_url
from tests.crmkit import NOW, Project, actions, make_project
from tests.httpproxy import Proxy
from tests.servers import Web, free_port, self_signed
from tests.test_webhooks import not_accepting

PASSWORD = "pr0xy-S3cret"
USER = "crmflow"
EVENT = {
    "entity": "deal",
    "event": "updated",
    "actor": 1,
    "record": {"id": 42, "name": "ACME", "stage": "won"},
    "previous": {"id": 42, "name": "ACME", "stage": "negotiation"},
}


def hook(url: str) -> str:
    return f"""
id: hook
entity: deal
trigger: {{on: updated}}
actions:
  - webhook: {{url: "{url}", body: {{deal_id: '{{{{ deal.id }}}}'}}}}
"""


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy(login=(USER, PASSWORD)) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("PROXY_PASSWORD", PASSWORD)
    return make_project(tmp_path)


def through(
    project: Project,
    port: int,
    allow: str,
    password: str = "${PROXY_PASSWORD}",
    timeout: str = "2s",
) -> None:
    """Configures the proxy at 127.0.0.1:`port`, its password from the environment."""
    project.configure(
        f"webhooks: {{allow: ['{allow}'], timeout: {timeout}, "
        f"proxy: 'http://{USER}:{password}@127.0.0.1:{port}'}}\n"
    )


def run(project: Project, url: str) -> tuple[int, dict[str, object], str]:
    project.rules({"w.yaml": hook(url)})
    code, plans, err = project.eval(EVENT)
    (action,) = actions(plans[0], "hook")
    return code, action, err


def history(project: Project) -> str:
    return json.dumps(project.state_sql("SELECT * FROM crmflow_history"), default=str)


def test_an_http_target_goes_through_the_proxy_in_absolute_form(
    project: Project, web: Web, proxy: Proxy
) -> None:
    through(project, proxy.port, f"{web.base}/*")
    code, action, _err = run(project, f"{web.base}/hook")
    assert code == 0 and action["status"] == "done", action
    (seen,) = proxy.seen
    assert (seen.method, seen.target) == ("POST", f"{web.base}/hook")
    (hit,) = web.hits
    assert hit.path == "/hook" and json.loads(hit.body) == {"deal_id": 42}
    assert hit.headers["Host"] == f"127.0.0.1:{web.port}"
    assert "Proxy-Authorization" not in hit.headers  # for the proxy alone
    assert PASSWORD not in json.dumps(action) + history(project)


@pytest.fixture
def tls_web(tmp_path: Path) -> Iterator[tuple[Web, Path]]:
    """A receiver speaking TLS with a certificate for 127.0.0.1, and that certificate."""
    cert, key = self_signed(tmp_path)
    server = Web()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    with server:
        yield server, cert


def test_an_https_target_goes_through_a_connect_tunnel(
    project: Project, tls_web: tuple[Web, Path], proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    web, cert = tls_web
    # The receiver's certificate stands in for a public CA's: trusted, so checked as usual.
    monkeypatch.setattr("requests.adapters.DEFAULT_CA_BUNDLE_PATH", str(cert))
    url = f"https://127.0.0.1:{web.port}"
    through(project, proxy.port, f"{url}/*")
    code, action, _err = run(project, f"{url}/secure?x=1")
    assert code == 0 and action["status"] == "done", action
    # The proxy saw where to, and nothing of the request: that went inside the tunnel.
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"127.0.0.1:{web.port}")]
    (hit,) = web.hits
    assert hit.method == "POST" and hit.path == "/secure?x=1"


def test_through_the_proxy_the_target_certificate_is_still_checked(
    project: Project, tls_web: tuple[Web, Path], proxy: Proxy
) -> None:
    web, _cert = tls_web
    url = f"https://127.0.0.1:{web.port}"
    through(project, proxy.port, f"{url}/*")
    code, action, _err = run(project, f"{url}/secure")
    assert code == 3 and action["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in str(action["result"]), action
    assert web.hits == [] and {s.method for s in proxy.seen} == {"CONNECT"}


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        # A private address the allow list does not name.
        ("http://127.0.0.1:{port}/*", "http://10.0.0.1/x"),
        # Cloud metadata, link-local.
        ("http://127.0.0.1:{port}/*", "http://169.254.169.254/latest/meta-data"),
        # Off the allow list: another path, another port.
        ("http://127.0.0.1:{port}/ok/*", "http://127.0.0.1:{port}/admin"),
        ("http://127.0.0.1:{port}/*", "http://127.0.0.1:1/x"),
        # A name under a wildcard whose lookup answers loopback.
        ("http://*.example.com:*/*", "http://erp.example.com:{port}/x"),
    ],
)
def test_a_refused_target_never_reaches_the_proxy(
    project: Project, web: Web, proxy: Proxy, allow: str, url: str
) -> None:
    through(project, proxy.port, allow.format(port=web.port))
    project.dns = {"erp.example.com": ["127.0.0.1"]}
    code, action, _err = run(project, url.format(port=web.port))
    assert code == 3
    assert str(action["result"]).startswith("refused before connecting"), action
    assert proxy.seen == [] and web.hits == []


def test_a_proxy_that_is_down_is_a_transient_failure(project: Project, web: Web) -> None:
    port = free_port()  # nothing listens there
    through(project, port, f"{web.base}/*")
    code, action, err = run(project, f"{web.base}/hook")
    assert code == 3 and action["status"] == "failed"
    assert action["result"] == (
        f"cannot connect to the proxy 127.0.0.1:{port}: Connection refused "
        "(gave up after 4 attempts)"
    )
    assert len(project.sleeps) == 3 and web.hits == []  # retried, as retry: says
    assert PASSWORD not in json.dumps(action) + err + history(project)


def test_a_proxy_that_does_not_answer_the_connection_is_a_transient_failure(
    project: Project, web: Web
) -> None:
    port = free_port()
    through(project, port, f"{web.base}/*", timeout="200ms")
    with not_accepting("127.0.0.1", port):
        code, action, _err = run(project, f"{web.base}/hook")
    assert code == 3 and len(project.sleeps) == 3
    assert action["result"] == (
        f"cannot connect to the proxy 127.0.0.1:{port}: no connection within 0.2s "
        "(gave up after 4 attempts)"
    )


def eval_sleeping(project: Project, sleep: Callable[[float], None]) -> dict[str, object]:
    """`Project.eval` with a sleep of the test's own: something can change between tries."""
    config = load_config(project.folder / "crmflow.yaml")
    out = io.StringIO()
    run_eval(
        config,
        config.rules,
        io.StringIO(json.dumps(EVENT) + "\n"),
        out,
        dry_run=False,
        fmt="json",
        now="2026-11-22T10:00:00Z",
        seed=1,
        stderr=io.StringIO(),
        services=Services(config, sleep=sleep, clock=lambda: NOW),
    )
    (action,) = actions(json.loads(out.getvalue()), "hook")
    return action


def test_a_webhook_goes_out_once_the_proxy_is_back(project: Project, web: Web) -> None:
    port = free_port()
    through(project, port, f"{web.base}/*")
    project.rules({"w.yaml": hook(f"{web.base}/hook")})
    started: list[Proxy] = []

    def sleep(seconds: float) -> None:
        if not started:  # the proxy comes up while crmflow waits to retry
            started.append(Proxy(login=(USER, PASSWORD), port=port).__enter__())

    try:
        action = eval_sleeping(project, sleep)
    finally:
        for server in started:
            server.__exit__(None, None, None)
    assert action["status"] == "done", action
    assert len(started[0].seen) == 1 and len(web.hits) == 1
    (detail,) = project.state_sql("SELECT detail FROM crmflow_history WHERE outcome = 'retried'")
    assert detail[0].startswith(f"attempt 1: cannot connect to the proxy 127.0.0.1:{port}")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_wrong_proxy_password_fails_at_once_and_is_not_shown(
    project: Project, web: Web, proxy: Proxy, scheme: str
) -> None:
    # An https target asks for a tunnel, which the proxy refuses; an http one gets the
    # proxy's 407 as its answer. Either way a retry cannot help.
    through(project, proxy.port, f"{scheme}://127.0.0.1:{web.port}/*", password="wr0ng-pass")
    code, action, err = run(project, f"{scheme}://127.0.0.1:{web.port}/hook")
    assert code == 3 and project.sleeps == []
    assert "407" in str(action["result"]), action
    assert "wr0ng-pass" not in json.dumps(action) + err + history(project)
    assert len(proxy.seen) == 1 and web.hits == []


def test_proxy_variables_of_the_environment_are_ignored(
    project: Project, web: Web, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy() as other:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, other.url)
        through(project, proxy.port, f"{web.base}/*")
        code, _action, _err = run(project, f"{web.base}/hook")
        assert code == 0 and other.seen == [] and len(proxy.seen) == 1


@pytest.mark.parametrize(
    "value",
    [
        "socks5://crmflow:{pw}@127.0.0.1:1080",
        "crmflow:{pw}@127.0.0.1:3128",
        "http://crmflow:{pw}@127.0.0.1:99999",
        "http://crmflow:{pw}@127.0.0.1:3128/path",
    ],
)
def test_an_invalid_proxy_is_reported_masked(project: Project, value: str) -> None:
    project.configure(f"webhooks: {{proxy: '{value.format(pw='${PROXY_PASSWORD}')}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project.folder / "crmflow.yaml")
    text = str(caught.value)
    assert "webhooks.proxy" in text and "***@127.0.0.1" in text, text
    assert PASSWORD not in text


def test_the_settings_never_show_the_proxy(project: Project, proxy: Proxy) -> None:
    through(project, proxy.port, "http://127.0.0.1/*")
    config = load_config(project.folder / "crmflow.yaml")
    assert config.webhooks.proxy == f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}"
    assert PASSWORD not in repr(config.webhooks)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@proxy:3128", "http://***@proxy:3128"),
        ("http://u:p@ss@proxy:3128", "http://***@proxy:3128"),  # an unencoded @
        ("http://proxy:3128", "http://proxy:3128"),
        ("u:p@proxy:3128", "***@proxy:3128"),
    ],
)
def test_masked(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_proxy_url_takes_http_and_https() -> None:
    assert proxy_url("https://proxy.internal:3128") == "https://proxy.internal:3128"
    with pytest.raises(ValueError, match=r"\*\*\*@proxy"):
        proxy_url("ftp://u:p@proxy:21")
