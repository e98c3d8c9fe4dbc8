"""A real `crmflow run` as an operator meets it: metrics scraped with Prometheus' own
parser, health and readiness, systemd's notify datagrams on a socket the test binds,
JSON log lines with their fields on stderr, and journald's priority prefixes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crmflow.crm.demo import create_demo_crm
from tests import processes
from tests.conftest import crmflow_bin
from tests.daemonproc import now_sql, sql, wait_until
from tests.servers import free_port

RULES = {
    "won.yaml": """
        id: won
        entity: deal
        trigger: {on: updated, fields: [stage]}
        conditions: {stage: {changed_to: won}}
        actions:
          - warn: "won {{ deal.name }}"
          - webhook: {url: "http://127.0.0.1:9/{{ deal.id }}"}
        """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    create_demo_crm(tmp_path / "crm.db")
    (tmp_path / "rules").mkdir()
    for name, text in RULES.items():
        (tmp_path / "rules" / name).write_text(textwrap.dedent(text))
    (tmp_path / "crmflow.yaml").write_text(
        "crm: sqlite:///crm.db\ntimezone: UTC\npoll_interval: 1s\n"
        "retry: {max_attempts: 1}\nemail: {transport: maildir, path: mail/}\n"
    )
    return tmp_path


def start(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = project / "daemon.log"
    return processes.spawn([crmflow_bin(), "run", *args], project, log, env)


def log_of(project: Path) -> str:
    return (project / "daemon.log").read_text(errors="replace")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    yield sock
    sock.close()


def test_metrics_health_and_notify_of_a_running_daemon(
    project: Path, notify_socket: socket.socket
) -> None:
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.getsockname()}
    daemon = start(project, "--log-format", "json", "--http", f"127.0.0.1:{port}", env=env)
    try:
        # READY=1 once the first tick is done, then WATCHDOG=1 after every tick.
        messages = [notify_socket.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1")
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        assert get(port, "/readyz") == (200, "ready\n")
        assert get(port, "/healthz") == (200, "ok\n")
        sql(project, f"UPDATE deals SET stage = 'won', updated_at = {now_sql()} WHERE id = 1")
        wait_until(lambda: "won: webhook failed" in log_of(project), timeout=30)
        code, text = get(port, "/metrics")
        assert code == 200
        seen = samples(text)
        assert seen[("crmflow_changes_total", (("entity", "deal"), ("event", "updated")))] >= 1
        assert seen[("crmflow_actions_total", (("outcome", "done"), ("type", "warn")))] == 1
        assert seen[("crmflow_actions_total", (("outcome", "failed"), ("type", "webhook")))] == 1
        assert seen[("crmflow_evaluations_total", (("result", "matched"),))] >= 1
        assert seen[("crmflow_leader", ())] == 1
        assert seen[("crmflow_ticks_total", ())] >= 2
        assert ("crmflow_poll_lag_seconds", ()) in seen
        code, page = get(port, "/records/deal/1")
        assert code == 200 and 'class="fired">fired' in page
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    notify_socket.settimeout(0)
    rest = []
    while True:
        try:
            rest.append(notify_socket.recv(4096).decode())
        except BlockingIOError:
            break
    assert rest[-1] == "STOPPING=1" and set(rest[:-1]) <= {"WATCHDOG=1"}
    # Every log line is one JSON object with a level; the failed action has its fields.
    lines = [json.loads(line) for line in log_of(project).splitlines()]
    assert all(line["level"] in ("info", "warning", "error") for line in lines)
    failed = next(line for line in lines if line.get("outcome") == "failed")
    assert failed["level"] == "error" and failed["event"] == "action"
    assert failed["workflow"] == "won" and failed["action"] == "webhook"
    assert failed["entity"] == "deal" and str(failed["record"]) == "1"
    assert "webhooks.allow" in failed["error"]
    change = next(line for line in lines if line["event"] == "change")
    assert (change["entity"], str(change["record"]), change["change"]) == ("deal", "1", "updated")
    assert {line["event"] for line in lines} <= {"change", "action", "fault", "note", "warn"}
    done = next(line for line in lines if line.get("outcome") == "done")
    assert done["action"] == "warn" and done["key"].startswith("cf_")


def test_under_journald_lines_carry_their_priority_and_no_time(project: Path) -> None:
    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    daemon = start(project, "--log-format", "plain", env=env)
    try:
        wait_until(lambda: "running:" in log_of(project), timeout=30)
        sql(project, f"UPDATE deals SET stage = 'won', updated_at = {now_sql()} WHERE id = 1")
        wait_until(lambda: "webhook failed" in log_of(project), timeout=30)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    lines = log_of(project).splitlines()
    assert all(line[:3] in ("<6>", "<4>", "<3>") for line in lines), lines
    assert any(line.startswith("<3>action") and "webhook failed" in line for line in lines)
    assert not any(line[3:7].isdigit() for line in lines)  # journald stamps lines itself


def test_stdout_holds_no_log_lines(project: Path) -> None:
    result = subprocess.run(
        [crmflow_bin(), "tick"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0 change(s), 0 due action(s)"]
    assert "leading: polling the CRM" in result.stderr
