"""The first start of a real `crmflow run`: date triggers for existing records, backfills.

On the demo CRM of `crmflow init` (dated by the real clock) with its example workflows.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from crmflow.timeutil import parse_instant
from tests import processes
from tests.conftest import crmflow_bin
from tests.daemonproc import DaemonProcess, sql, state_sql, wait_until

RENEWAL = """\
id: renewal-reminder
entity: contract
trigger: {date: end_date, offset: -OFFSET, time: "09:00"}
conditions: {status: active}
actions:
  - create: {entity: task, values: {title: "Renew {{ contract.name }}", status: open}}
"""


def init_demo(tmp_path: Path) -> Path:
    assert subprocess.run([crmflow_bin(), "init", "demo"], cwd=tmp_path).returncode == 0
    return tmp_path / "demo"


def pending(folder: Path, workflow: str) -> list[tuple[str, str]]:
    """(record id, status) of a workflow's pending rows, oldest first."""
    rows = state_sql(
        folder,
        f"SELECT record_id, status FROM crmflow_pending WHERE workflow = '{workflow}' ORDER BY id",
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def test_first_start_plans_date_triggers_for_existing_records(tmp_path: Path) -> None:
    folder = init_demo(tmp_path)
    active = {str(r[0]) for r in sql(folder, "SELECT id FROM contracts WHERE status = 'active'")}
    daemon = DaemonProcess(folder)
    daemon.start()
    # One row per active contract (both anniversaries lie ahead in the demo); no other
    # workflow fired: no task, no e-mail, no history but the date plans.
    assert sorted(pending(folder, "contract-anniversary")) == sorted(
        (record, "pending") for record in active
    )
    fired = state_sql(folder, "SELECT workflow FROM crmflow_history WHERE outcome = 'fired'")
    assert {str(r[0]) for r in fired} == {"contract-anniversary"}
    assert not (folder / "mail").exists() or not any((folder / "mail").rglob("*.eml"))

    # A new date workflow, hot-reloaded: planned for the existing records too.
    (folder / "rules" / "renewal.yaml").write_text(RENEWAL.replace("OFFSET", "30d"))
    daemon.wait_for_log("renewal-reminder: planned")
    first = pending(folder, "renewal-reminder")
    assert first and {r for r, _ in first} <= active and {s for _, s in first} == {"pending"}
    # Changed: its rows are planned again, the old ones replaced.
    (folder / "rules" / "renewal.yaml").write_text(RENEWAL.replace("OFFSET", "60d"))
    wait_until(lambda: len(pending(folder, "renewal-reminder")) == 2 * len(first), timeout=20)
    statuses = [s for _, s in pending(folder, "renewal-reminder")]
    assert statuses == ["cancelled"] * len(first) + ["pending"] * len(first)

    # A set `crmflow lint` rejects (a field typo) does not go live: one warning line.
    (folder / "rules" / "renewal.yaml").write_text(
        RENEWAL.replace("OFFSET", "90d").replace("status: active", "statsu: active")
    )
    daemon.wait_for_log("not reloaded")
    warnings = [line for line in daemon.log().splitlines() if "not reloaded" in line]
    assert len(warnings) == 1 and "CF203" in warnings[0] and "statsu" in warnings[0]
    assert len(pending(folder, "renewal-reminder")) == 2 * len(first)

    # A restart plans nothing again.
    (folder / "rules" / "renewal.yaml").write_text(RENEWAL.replace("OFFSET", "60d"))
    assert daemon.stop() == 0
    before = state_sql(folder, "SELECT count(*) FROM crmflow_pending")
    daemon.start()
    time.sleep(1)
    assert state_sql(folder, "SELECT count(*) FROM crmflow_pending") == before
    assert "planned" not in daemon.log()
    assert daemon.stop() == 0


def test_backfill_does_what_its_preview_says_without_a_failure(tmp_path: Path) -> None:
    folder = init_demo(tmp_path)
    log = folder / "backfill.log"
    processes.spawn(
        [crmflow_bin(), "run", "--backfill", "--yes", "--log-format", "plain"], folder, log
    )
    wait_until(lambda: "running:" in log.read_text(), timeout=60)
    text = log.read_text()
    preview = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\S+): would act on (\d+) existing record", text, re.M)
    }
    assert sum(preview.values()) > 10, text
    running = next(line for line in text.splitlines() if " running: " in line)
    started = parse_instant(running.split()[0]).timestamp()
    # The backfill's own decisions: those made before the daemon said it was running
    # (later ones are chains its writes set off).
    fired = Counter(
        str(r[0])
        for r in state_sql(
            folder,
            f"SELECT workflow FROM crmflow_history WHERE outcome = 'fired' AND at <= {started}",
        )
    )
    assert fired == Counter({w: n for w, n in preview.items() if n}), text
    time.sleep(3)  # the chains and the first due actions
    outcomes = Counter(str(r[0]) for r in state_sql(folder, "SELECT outcome FROM crmflow_history"))
    assert outcomes["failed"] == 0 and outcomes["done"] > 20, outcomes
    assert "database is locked" not in log.read_text()
    assert "Traceback" not in log.read_text()
    processes.end_all()


def test_the_preview_runs_on_a_copy_and_changes_nothing(tmp_path: Path) -> None:
    """Answering no to the backfill's question leaves the state as it was."""
    folder = init_demo(tmp_path)
    tasks = sql(folder, "SELECT count(*) FROM tasks")
    result = subprocess.run(
        [crmflow_bin(), "run", "--backfill"],
        cwd=folder,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "would act on" in result.stdout
    assert sql(folder, "SELECT count(*) FROM tasks") == tasks
    history = state_sql(folder, "SELECT count(*) FROM crmflow_history")
    assert history == [(0,)]
    cooldowns = state_sql(folder, "SELECT count(*) FROM crmflow_cooldowns")
    assert cooldowns == [(0,)]
