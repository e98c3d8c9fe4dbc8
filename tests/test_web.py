"""The listener of `crmflow run --http`: metrics read with Prometheus' own parser, health,
the read-only pages over real HTTP, and the token that guards any other bind.

The pages read a state the daemon (through the rig) really wrote. The browser check
(headless Chromium, a screenshot of each page) is in test_web_browser.py.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crmflow.commands.control import status
from crmflow.commands.web import WebView, serve
from crmflow.daemon.metrics import Health, Metrics
from crmflow.errors import ConfigError
from tests.daemonkit import Rig, make_rig

RULES = {
    "won.yaml": """
        id: won
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: won}}
        actions:
          - warn: "won {{ deal.name }}"
          - warn: "a week later"
            delay: 7d
        """,
    "big.yaml": """
        id: big
        entity: deal
        trigger: {on: updated}
        conditions: {amount: {gte: 1000000}}
        actions: [{warn: big}]
        """,
}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path)
    rig.rules(RULES)
    rig.start()
    # A name a browser must show, never run.
    rig.write(
        "UPDATE deals SET stage = 'won', name = '<script>alert(1)</script>', "
        "updated_at = {stamp}, updated_by = {by} WHERE id = 1"
    )
    rig.tick(seconds=5)
    yield rig
    rig.close()


def listen(rig: Rig, token: str | None = None, health: Health | None = None) -> Any:
    assert rig.daemon is not None
    state = rig.daemon.state
    metrics = Metrics(status=lambda: status(state, rig.clock()))
    view = WebView(
        state,
        metrics,
        health or Health(poll_interval=1.0),
        workflows=lambda entity: sorted(
            w.id
            for w in rig.daemon.rules.workflows
            if w.entity == entity  # type: ignore[union-attr]
        ),
        clock=rig.clock,
        token=token,
        entities=lambda: ["deal", "lead"],
    )
    return serve(("127.0.0.1", 0), view), metrics


def get(server: Any, path: str, token: str | None = None) -> tuple[int, str]:
    port = server.server_address[1]
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_parse_with_prometheus_own_parser(rig: Rig) -> None:
    server, metrics = listen(rig)
    try:
        metrics.action("warn", "done")
        metrics.action("warn", "done")
        metrics.action("webhook", "failed")
        metrics.tick(leading=True)
        code, text = get(server, "/metrics")
    finally:
        server.shutdown()
    assert code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("crmflow_actions_total", (("outcome", "done"), ("type", "warn")))] == 2
    assert samples[("crmflow_actions_total", (("outcome", "failed"), ("type", "webhook")))] == 1
    assert samples[("crmflow_pending_actions", (("status", "pending"),))] >= 1
    assert samples[("crmflow_leader", ())] == 1
    assert samples[("crmflow_ticks_total", ())] == 1
    assert ("crmflow_poll_lag_seconds", ()) in samples


def test_health_and_readiness(rig: Rig) -> None:
    health = Health(poll_interval=1.0, started=100.0)
    server, _ = listen(rig, health=health)
    try:
        assert get(server, "/readyz")[0] == 503  # no tick yet
        health.last_tick = health.last_poll = 10**9  # just now, far in the future
        health.leading = True
        assert get(server, "/readyz") == (200, "ready\n")
        assert get(server, "/healthz") == (200, "ok\n")
        health.last_tick = 0.0  # long ago
        code, text = get(server, "/healthz")
        assert code == 503 and text.startswith("last tick finished")
    finally:
        server.shutdown()


def test_the_pages_show_what_the_state_holds(rig: Rig) -> None:
    server, _ = listen(rig)
    try:
        code, pending = get(server, "/")
        assert code == 200
        assert "won" in pending and "deal:1" in pending  # the delayed warn, a week out
        code, history = get(server, "/history?outcome=fired")
        assert code == 200 and history.count('class="fired"') == 1
        code, record = get(server, "/records/deal/1")
        assert code == 200
        # Every workflow of the entity, with the reason where it did not fire.
        assert 'class="fired">fired' in record
        assert 'class="not_fired">not fired' in record and "amount gte" in record
        assert "Pending actions" in record
        # CRM data is shown as text, never as markup.
        assert "<script>" not in record and "&lt;script&gt;" in record
        assert get(server, "/history?record=deal")[0] == 400  # one line about entity:id
        code, page = get(server, "/history?outcome=bogus")
        assert code == 400 and "no outcome &#39;bogus&#39;" in page
        code, page = get(server, "/history?since=2x")
        assert code == 400 and "History: since: " in page
        assert get(server, "/records/nosuch/1")[0] == 404
        assert get(server, "/nowhere")[0] == 404
    finally:
        server.shutdown()


def test_a_token_guards_everything_but_the_health_checks(rig: Rig) -> None:
    server, _ = listen(rig, token="s3cret")
    try:
        assert get(server, "/")[0] == 401
        assert get(server, "/metrics", token="wrong")[0] == 401
        assert get(server, "/", token="s3cret")[0] == 200
        assert get(server, "/metrics", token="s3cret")[0] == 200
        assert get(server, "/readyz")[0] in (200, 503)
        # A browser: the token once in the address, then a cookie.
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token=s3cret", timeout=10) as r:
            cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("crmflow_token=s3cret;") and "HttpOnly" in cookie
        request = urllib.request.Request(f"http://127.0.0.1:{port}/history")
        request.add_header("Cookie", cookie.split(";")[0])
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
        assert get(server, "/?token=wrong")[0] == 401
    finally:
        server.shutdown()


def test_any_other_bind_needs_a_token(rig: Rig) -> None:
    assert rig.daemon is not None
    view = WebView(rig.daemon.state, Metrics(), Health(1.0), lambda e: [], rig.clock)
    with pytest.raises(ConfigError, match="only a loopback address serves without a token"):
        serve(("0.0.0.0", 0), view)
