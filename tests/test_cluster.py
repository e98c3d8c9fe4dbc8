"""Several daemons on one PostgreSQL: one leads, all work, and deaths are survived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from crmflow.crm.demo import create_demo_crm
from crmflow.state.store import State
from tests import processes
from tests.conftest import crmflow_bin
from tests.crmkit import Database
from tests.pgserver import create_database
from tests.servers import Web

DEALS = int(os.environ.get("CRMFLOW_CLUSTER_DEALS", "1500"))  # two actions each: 3,000
WORKFLOW = """
id: batch
entity: deal
trigger: {on: created}
actions:
  - update: {values: {probability: 7}}
    delay: 1s
  - webhook: {url: "WEB/seen", body: {deal: "{{ deal.id }}"}}
    delay: 1s
"""


@pytest.fixture
def pg_database(postgres_admin: str) -> str:
    return create_database(postgres_admin, "c")


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


def test_three_daemons_survive_the_loss_of_one_and_of_the_leader(
    tmp_path: Path, pg_database: str, web: Web
) -> None:
    create_demo_crm(pg_database)
    (tmp_path / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: {pg_database}
        state: {pg_database}
        rules: rules/
        poll_interval: 200ms
        lease: 2s
        webhooks: {{allow: ["{web.base}/*"], timeout: 5s}}
        retry: {{base_delay: 100ms}}
        """),
        encoding="utf-8",
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "w.yaml").write_text(WORKFLOW.replace("WEB", web.base))
    procs: dict[int, subprocess.Popen[bytes]] = {}
    logs = []

    def spawn(n: int) -> None:
        logs.append(tmp_path / f"d{n}.log")
        procs[n] = processes.spawn(
            [crmflow_bin(), "run", "--log-format", "plain"], tmp_path, logs[-1]
        )

    def log_text() -> str:
        return "\n".join(p.read_text(errors="replace") for p in logs)

    for n in range(3):
        spawn(n)
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while "running:" not in (tmp_path / "d2.log").read_text(errors="replace"):
        assert time.monotonic() < deadline, log_text()
        time.sleep(0.1)
    assert log_text().count("leading: polling") == 1
    crm = Database(pg_database)
    crm(
        "INSERT INTO deals (id, name, stage, probability, updated_at) "
        "SELECT 10000 + v, 'batch ' || v, 'qualification', 10, "
        "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
        f"FROM generate_series(1, {DEALS}) AS v"
    )
    state = State(pg_database)

    def done() -> int:
        with state.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM crmflow_pending WHERE status = 'done'")
                ).scalar_one()
            )

    while done() < DEALS * 2 // 5:
        assert time.monotonic() < deadline + 120, log_text()
        time.sleep(0.05)
    shown = subprocess.run(
        [crmflow_bin(), "status", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    report = json.loads(shown.stdout)
    assert len(report["daemons"]) == 3 and report["leader"] is not None
    leader = next(d for d in state.daemons() if d["leader"])
    assert report["leader"] == leader["id"]
    victims = [n for n, p in procs.items() if p.pid == leader["pid"]]
    victims += [n for n in procs if n not in victims][:1]
    for n in victims:  # the leader and one more
        procs[n].send_signal(signal.SIGKILL)
        procs[n].wait(timeout=10)
    survivor = next(n for n in procs if n not in victims)
    settle = time.monotonic() + 180
    while True:
        with state.engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM crmflow_pending WHERE status IN ('pending', 'running')")
            ).scalar_one()
        updated = crm("SELECT count(*) FROM deals WHERE id > 10000 AND probability = 7")[0][0]
        seen = len({h.headers["webhook-id"] for h in list(web.hits) if h.path == "/seen"})
        # Actions already due when a change is handled run at once (no pending row), so
        # completion is measured by the effects.
        if left == 0 and updated == DEALS and seen == DEALS:
            break
        if time.monotonic() > settle:
            with state.engine.connect() as conn:
                counts = conn.execute(
                    text("SELECT status, action_type, count(*) FROM crmflow_pending GROUP BY 1, 2")
                ).all()
                fired = conn.execute(
                    text(
                        "SELECT count(DISTINCT record_id) FROM "
                        "crmflow_history WHERE outcome = 'fired'"
                    )
                ).scalar()
            pytest.fail(f"not settled: {counts}, fired for {fired} deals\n{log_text()[-2000:]}")
        time.sleep(0.2)
    procs[survivor].send_signal(signal.SIGTERM)
    assert procs[survivor].wait(timeout=30) == 0
    assert "took over the lead" in (tmp_path / f"d{survivor}.log").read_text()
    # Every CRM update applied, each exactly once.
    assert crm("SELECT count(*) FROM deals WHERE id > 10000 AND probability = 7") == [(DEALS,)]
    assert crm("SELECT count(*), count(DISTINCT key) FROM crmflow_applied") == [(DEALS, DEALS)]
    # The receiver saw every key; repeats only for sends cut off before their record.
    ids = [h.headers["webhook-id"] for h in web.hits if h.path == "/seen"]
    assert len(set(ids)) == DEALS
    assert len(ids) - DEALS <= 2 * 50  # at most the claimed batch of each killed daemon
    state.dispose()
    crm.dispose()
