"""Rate limits shared by the daemons of one PostgreSQL state: three daemons send no more
to a host than one would (`webhooks.per_host_per_minute`)."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmflow.crm.demo import create_demo_crm
from crmflow.engine.limits import RateLimits
from crmflow.state.store import State
from crmflow.timeutil import format_utc
from tests import processes
from tests.conftest import crmflow_bin
from tests.crmkit import Database
from tests.pgserver import create_database
from tests.servers import Web

WORKFLOW = """
id: announce
entity: deal
trigger: {on: created}
actions:
  - webhook: {url: "WEB/seen", body: {deal: "{{ deal.id }}"}}
"""


@pytest.fixture
def pg_database(postgres_admin: str) -> str:
    return create_database(postgres_admin, "l")


@pytest.fixture
def web() -> Iterator[Web]:
    with Web() as server:
        yield server


def test_two_limiters_on_one_state_share_the_window(pg_database: str) -> None:
    state = State(pg_database)
    try:
        first, second = (RateLimits(webhook_per_host=30, shared=state.engine) for _ in range(2))
        now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        params = {"url": "https://hooks.example.com/x"}
        waits = [(first if n % 2 else second).wait("webhook", params, now) for n in range(45)]
        assert waits[:30] == [0.0] * 30
        assert all(w == pytest.approx(60.0) for w in waits[30:])
        other = {"url": "https://other.example.com/x"}
        assert first.wait("webhook", other, now) == 0.0  # per host
        later = datetime(2026, 12, 3, 12, 1, 0, 1, tzinfo=UTC)
        assert second.wait("webhook", params, later) == 0.0  # a minute on, a slot is free
    finally:
        state.dispose()


def test_three_daemons_send_no_more_than_the_limit(
    tmp_path: Path, pg_database: str, web: Web
) -> None:
    create_demo_crm(pg_database)
    (tmp_path / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: {pg_database}
        state: {pg_database}
        rules: rules/
        poll_interval: 200ms
        webhooks: {{allow: ["{web.base}/*"], timeout: 5s, per_host_per_minute: 30}}
        """)
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "w.yaml").write_text(WORKFLOW.replace("WEB", web.base))
    # The daemons' clock, moved a minute on by the test: the window is a minute wide.
    clock = tmp_path / "clock"
    start = datetime.now(UTC).replace(microsecond=0)
    clock.write_text(format_utc(start))
    env = {**os.environ, "CRMFLOW_CLOCK_FILE": str(clock)}
    logs = [tmp_path / f"d{n}.log" for n in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    for log in logs:
        procs.append(
            processes.spawn([crmflow_bin(), "run", "--log-format", "plain"], tmp_path, log, env)
        )
        time.sleep(0.3)
    try:
        deadline = time.monotonic() + 30
        while not all("running:" in log.read_text(errors="replace") for log in logs):
            assert time.monotonic() < deadline, "\n".join(p.read_text() for p in logs)
            time.sleep(0.1)
        Database(pg_database)(
            "INSERT INTO deals (id, name, stage, updated_at) SELECT 20000 + v, 'd' || v, "
            "'lead', to_char(clock_timestamp() AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') FROM generate_series(1, 150) AS v'
        )

        def arrived(count: int) -> None:
            limit = time.monotonic() + 60
            while len(web.json_bodies("/seen")) < count:
                assert time.monotonic() < limit, "\n".join(p.read_text() for p in logs)
                time.sleep(0.1)
            time.sleep(4)  # time enough for three daemons to overstep, if they could

        # The first minute: 30 go out, the other 120 wait for the window to move on.
        arrived(30)
        assert len(web.json_bodies("/seen")) == 30
        # A minute later all three daemons carry the waiting ones out: 30 more, not 90.
        clock.write_text(format_utc(start + timedelta(seconds=61)))
        arrived(60)
        assert len(web.json_bodies("/seen")) == 60
        served = {p.name: p.read_text(errors="replace").count("webhook done") for p in logs}
        assert sum(served.values()) == 60
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
