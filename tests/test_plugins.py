"""Actions from another package (entry point group `crmflow.actions`): a small plugin
is installed (pip, into a folder of its own that the commands find on PYTHONPATH) and
its action is then in the schema, lint, the reference and a real run, with the same
keys and retries as a built-in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import crmflow_bin

PLUGIN = """
from pathlib import Path

from crmflow.plugins import CustomAction, Job, Outcome, Transient


def open_ticket(job: Job) -> Outcome:
    log = Path(job.params["log"])
    tries = log.with_suffix(".tries")
    count = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(count))
    if count == 1:
        raise Transient("help desk busy")
    with log.open("a") as out:
        out.write(f"{job.key} {job.params['queue']} {job.params['title']}\\n")
    return Outcome("done", f"ticket in {job.params['queue']}", output={"ticket": 7})


TICKET = CustomAction(
    name="ticket",
    doc="open a ticket in the help desk",
    schema={
        "type": "object",
        "required": ["queue", "title", "log"],
        "additionalProperties": False,
        "properties": {
            "queue": {"type": "string", "description": "the help desk queue"},
            "title": {"type": "string", "description": "the ticket's title"},
            "log": {"type": "string", "description": "where tickets are written"},
        },
    },
    run=open_ticket,
    dry_output=lambda params: {"ticket": None},
    example="actions:\\n  - ticket: {queue: sales, title: x, log: t.log}\\n",
)
"""

ENTRY_POINTS = "[crmflow.actions]\nticket = acme_ticket:TICKET\n"


def _wheel(folder: Path) -> Path:
    """The plugin as a wheel, written by hand: installing it needs no build backend and
    no package index."""
    import base64
    import hashlib
    import zipfile

    info = "acme_crmflow_ticket-1.0.dist-info"
    files = {
        "acme_ticket.py": PLUGIN,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: acme-crmflow-ticket\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": ENTRY_POINTS,
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / "acme_crmflow_ticket-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed by pip into a folder of its own."""
    wheel = _wheel(tmp_path_factory.mktemp("plugin"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert (target / "acme_ticket.py").exists()
    return target


def run(site: Path, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [crmflow_bin(), *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


WORKFLOW = """\
id: escalate
entity: deal
trigger: {on: created}
actions:
  - id: t
    ticket: {queue: sales, title: "Look at {{ deal.name }}", log: LOG}
  - warn: "ticket {{ steps.t.ticket }}"
"""


def test_a_plugin_action_is_in_the_schema_lint_and_reference(site: Path, tmp_path: Path) -> None:
    schema = json.loads(run(site, tmp_path, "schema").stdout)
    ticket = schema["$defs"]["action"]["properties"]["ticket"]
    assert ticket["required"] == ["queue", "title", "log"]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "w.yaml").write_text(WORKFLOW.replace("LOG", "t.log"))
    assert run(site, tmp_path, "lint", "rules").returncode == 0
    (tmp_path / "rules" / "w.yaml").write_text(
        WORKFLOW.replace("LOG", "t.log").replace("queue: sales", "queu: sales")
    )
    lint = run(site, tmp_path, "lint", "rules")
    assert lint.returncode == 1
    assert "rules/w.yaml:6:14: CF101 escalate: actions[0].ticket: unknown key 'queu'" in lint.stdout
    assert "CF207" not in lint.stdout  # steps.t still names the refused action
    reference = subprocess.run(
        [sys.executable, "-c", "from crmflow.rules.reference import render; print(render())"],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "### `ticket`" in reference and "From a plugin" in reference
    # Without the plugin the action is unknown: one line, which says why it may be.
    missing = subprocess.run(
        [crmflow_bin(), "lint", "rules"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[0].endswith(
        "unknown action type or key 'ticket' (an action of a package that is not installed here?)"
    )
    assert "needs one of" not in missing.stdout


def ticket_project(folder: Path) -> Path:
    """The demo CRM, the ticket workflow and a crmflow.yaml in `folder`; the tickets' log."""
    from crmflow.crm.demo import create_demo_crm

    log = folder / "tickets.log"
    (folder / "rules").mkdir()
    (folder / "rules" / "w.yaml").write_text(WORKFLOW.replace("LOG", str(log)))
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        "crm: sqlite:///crm.db\ntimezone: UTC\nretry: {base_delay: 0s, max_attempts: 3}\n"
        "email: {transport: maildir, path: mail/}\n"
    )
    return log


def test_a_plugin_action_runs_with_keys_retries_and_steps(site: Path, tmp_path: Path) -> None:
    log = ticket_project(tmp_path)
    event = {"entity": "deal", "event": "created", "record": {"id": 4, "name": "Acme"}}
    dry = run(site, tmp_path, "eval", "--dry-run", "--format", "json", stdin=json.dumps(event))
    assert dry.returncode == 0, dry.stderr
    assert not log.exists()  # a dry run carries nothing out
    plan = json.loads(dry.stdout)["rules"][0]
    assert plan["actions"][0]["params"]["title"] == "Look at Acme"
    done = run(site, tmp_path, "eval", "--format", "json", stdin=json.dumps(event))
    assert done.returncode == 0, done.stderr
    assert "ticket failed (help desk busy); retrying" in done.stderr  # first try: transient
    key, queue, title = log.read_text().split(maxsplit=2)
    assert key.startswith("cf_") and queue == "sales" and title == "Look at Acme\n"
    # The same change again has the same idempotency key: recorded as done, it is
    # skipped, as a built-in action would be.
    again = run(site, tmp_path, "eval", "--format", "json", stdin=json.dumps(event))
    assert again.returncode == 0, again.stderr
    assert len(log.read_text().splitlines()) == 1
    repeat = json.loads(again.stdout)["rules"][0]["actions"][0]
    assert repeat["status"] == "skipped" and repeat["result"].startswith("already done at")
    actions = json.loads(done.stdout)["rules"][0]["actions"]
    assert actions[1]["params"]["message"] == "ticket 7"  # the plugin's output in steps


def test_a_broken_plugin_is_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[crmflow.actions]\nbad = broken_mod:NOTHING\n")
    (site / "broken_mod.py").write_text("raise RuntimeError('half installed')\n")
    result = run(site, tmp_path, "schema")
    assert result.returncode == 2
    assert result.stderr == (
        "crmflow: crmflow.actions entry point 'bad' (broken_mod:NOTHING) cannot be loaded: "
        "RuntimeError: half installed\n"
    )


def test_the_daemon_hands_a_plugin_action_to_its_workers_and_its_output_to_the_next(
    site: Path, tmp_path: Path
) -> None:
    """In the daemon an action of a plugin (it may wait on another host) is tried by a
    worker, not while the change is handled; the action after it waits for its outcome,
    retries included, and renders its steps.<id>."""
    import sqlite3

    ticket_project(tmp_path)
    assert run(site, tmp_path, "tick").returncode == 0  # the baseline
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        conn.execute(
            "INSERT INTO deals (id, name, updated_by, updated_at) "
            "VALUES (77, 'Acme', 2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        )
    for _ in range(3):  # the change; the ticket's retry; the warning behind it
        assert run(site, tmp_path, "tick").returncode == 0
    history = json.loads(
        run(site, tmp_path, "history", "--workflow", "escalate", "--format", "json").stdout
    )
    steps = [(h["action_type"], h["outcome"]) for h in history if h.get("action_type")]
    assert steps == [
        ("ticket", "retried"),
        ("ticket", "done"),
        ("warn", "done"),
    ], history
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        warned = conn.execute("SELECT body FROM notifications WHERE body LIKE 'ticket%'").fetchall()
    assert warned == [("ticket 7",)]
