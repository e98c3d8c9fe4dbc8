"""An action skipped as done keeps its outputs: later steps see `steps.<id>` as before.

A daemon killed between two steps of a change finishes the change after its restart with
the same idempotency keys: step 1 is skipped as already done, and step 3 must still see
the id of the task step 1 created (before the state kept outputs it saw null, and a link
row got a NULL task id). The outputs live with the done record in crmflow_history
(state schema v4); a CRM write found in crmflow_applied gives its earlier result too.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crmflow.crm.demo import create_demo_crm
from crmflow.state.store import SCHEMA_VERSION, State
from tests.crmkit import Project, make_project
from tests.daemonproc import DaemonProcess, now_sql, sql, state_sql, wait_until

LINKED = """
id: linked-task
entity: deal
trigger: {on: updated, fields: [probability]}
conditions:
  probability: {changed_to: 42}
actions:
  - id: t
    create:
      entity: task
      values: {title: "Follow up {{ deal.name }}", related_entity: deal, related_id: "{{ deal.id }}"}
  - webhook: {url: "WEB/hold", body: {task: "{{ steps.t.id }}"}}
  - create:
      entity: activity
      values:
        kind: note
        subject: "Task {{ steps.t.id }} opened"
        related_entity: task
        related_id: "{{ steps.t.id }}"
"""


class Holding:
    """An HTTP receiver on 127.0.0.1 whose first request gets no answer until released:
    the daemon sending it is inside step 2, with step 1 done and recorded."""

    def __init__(self) -> None:
        self.first = threading.Event()  # the first request has arrived
        self.released = threading.Event()
        self.requests: list[tuple[str, Any]] = []  # (webhook-id, JSON body)
        holding = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                holding.requests.append((self.headers["webhook-id"], body))
                if not holding.first.is_set():
                    holding.first.set()
                    holding.released.wait(timeout=60)  # bounded: never outlive the test
                # The first request's sender is dead by now: nobody reads this answer.
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Holding:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def holding() -> Iterator[Holding]:
    with Holding() as server:
        yield server


def linked_project(folder: Path, holding: Holding) -> DaemonProcess:
    create_demo_crm(folder / "crm.db")
    (folder / "crmflow.yaml").write_text(
        textwrap.dedent(f"""\
        crm: sqlite:///crm.db
        rules: rules/
        timezone: Europe/Berlin
        poll_interval: 200ms
        email: {{transport: maildir, path: mail/}}
        webhooks: {{allow: ["{holding.base}/*"], timeout: 60s}}
        retry: {{base_delay: 100ms}}
        """),
        encoding="utf-8",
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "linked.yaml").write_text(LINKED.replace("WEB", holding.base))
    return DaemonProcess(folder)


def step_history(folder: Path, index: int) -> list[tuple[str, str, str | None]]:
    return [
        (str(r[0]), str(r[1]), None if r[2] is None else str(r[2]))
        for r in state_sql(
            folder,
            "SELECT outcome, detail, output FROM crmflow_history "
            f"WHERE workflow = 'linked-task' AND action_index = {index} ORDER BY id",
        )
    ]


def test_sigkill_between_steps_then_the_restart_sees_the_created_id(
    tmp_path: Path, holding: Holding
) -> None:
    daemon = linked_project(tmp_path, holding)
    daemon.start()
    with sqlite3.connect(tmp_path / "crm.db", timeout=30) as conn:
        conn.execute(
            f"UPDATE deals SET probability = 42, updated_at = {now_sql()}, updated_by = 2 "
            "WHERE id = 3"
        )
    assert holding.first.wait(timeout=30), daemon.log()
    daemon.kill()  # inside step 2: step 1's task is committed and its done recorded
    ((task_id,),) = sql(tmp_path, "SELECT id FROM tasks WHERE title LIKE 'Follow up %'")
    assert step_history(tmp_path, 0) == [
        ("done", f"created task {task_id}", json.dumps({"id": task_id}))
    ]
    assert sql(tmp_path, "SELECT count(*) FROM activities WHERE related_entity = 'task'") == [(0,)]
    holding.released.set()

    daemon.start()
    wait_until(lambda: [o for o, _, _ in step_history(tmp_path, 2)] == ["done"], timeout=30)
    assert daemon.stop() == 0

    # The task was created once; step 3's row links it (not NULL), as on a first run.
    assert sql(tmp_path, "SELECT id FROM tasks WHERE title LIKE 'Follow up %'") == [(task_id,)]
    assert sql(
        tmp_path,
        "SELECT subject, related_id FROM activities WHERE related_entity = 'task'",
    ) == [(f"Task {task_id} opened", task_id)]
    # The change was handled once: step 2 (a webhook) had gone to the daemon's workers,
    # stored with step 1's output, and step 3 waited behind it. After the kill step 2's
    # row went again, with the same key and the same task id, and then released step 3.
    assert [o for o, _, _ in step_history(tmp_path, 0)] == ["done"]
    (first, again) = holding.requests
    assert first == again and first[1] == {"task": task_id}


WORKFLOW = LINKED.replace(
    '  - webhook: {url: "WEB/hold", body: {task: "{{ steps.t.id }}"}}\n', ""
).replace("changed_to: 42", "changed_to: 70")
EVENT = {
    "entity": "deal",
    "event": "updated",
    "record": {"id": 3, "name": "Alpenblick", "probability": 70},
    "previous": {"id": 3, "name": "Alpenblick", "probability": 60},
    "actor": 1,
    "at": "2026-11-22T10:00:00Z",
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path)
    made.rules({"w.yaml": WORKFLOW})
    yield made
    made.close()


def _links(project: Project) -> list[tuple[Any, ...]]:
    return project.sql("SELECT related_id FROM activities WHERE related_entity = 'task'")


def test_a_create_skipped_as_applied_in_the_crm_still_gives_its_id(project: Project) -> None:
    # A crash between the CRM's commit and the state's record leaves the task in the CRM
    # (with its key in crmflow_applied) and no done record: the repeat is recognised by
    # the CRM, and its earlier result is the output later steps see.
    code, (plan,) = project.eval(EVENT)[:2]
    assert code == 0
    ((task_id,),) = project.sql("SELECT id FROM tasks WHERE title = 'Follow up Alpenblick'")
    project.state_sql("DELETE FROM crmflow_history WHERE action_type = 'create'")
    project.sql("DELETE FROM activities WHERE related_entity = 'task'")
    project.sql("DELETE FROM crmflow_applied WHERE entity = 'activity'")

    code, (plan,) = project.eval(EVENT)[:2]
    assert code == 0
    step1, step3 = plan["rules"][0]["actions"]
    assert (step1["status"], step1["result"]) == ("skipped", f"already applied: task {task_id}")
    assert step3["params"]["values"]["related_id"] == task_id
    assert project.sql("SELECT count(*) FROM tasks WHERE title = 'Follow up Alpenblick'") == [(1,)]
    assert _links(project) == [(task_id,)]


def test_a_repeated_change_is_skipped_as_done_with_the_same_outputs(project: Project) -> None:
    code, (first,) = project.eval(EVENT)[:2]
    assert code == 0
    project.sql("DELETE FROM activities WHERE related_entity = 'task'")  # step 3 only
    project.state_sql(
        "DELETE FROM crmflow_history WHERE action_type = 'create' AND action_index = 1"
    )
    project.sql("DELETE FROM crmflow_applied WHERE entity = 'activity'")
    code, (again,) = project.eval(EVENT)[:2]
    assert code == 0
    step1, step3 = again["rules"][0]["actions"]
    assert step1["status"] == "skipped" and step1["result"].startswith("already done at ")
    task_id = first["rules"][0]["actions"][0]["result"].removeprefix("created task ")
    assert step3["params"]["values"]["related_id"] == int(task_id)
    assert _links(project) == [(int(task_id),)]


def test_a_version_3_state_gains_outputs_and_its_old_done_rows_have_none(
    project: Project,
) -> None:
    code, _ = project.eval(EVENT)[:2]
    assert code == 0
    path = project.folder / ".crmflow" / "state.db"
    project.state_db.dispose()
    with sqlite3.connect(path) as conn:  # make it look like version 3, rows and all
        conn.execute("ALTER TABLE crmflow_history DROP COLUMN output")
        conn.execute("UPDATE crmflow_meta SET value = '3' WHERE key = 'schema_version'")
    state = State(f"sqlite:///{path}")
    assert state.version == SCHEMA_VERSION == 5
    key = project.state_sql("SELECT key FROM crmflow_history WHERE action_index = 0")[0][0]
    done = state.done_action(key)
    assert done is not None and done.output is None  # recorded before outputs were kept
    state.record("done", key="new", output={"id": 5})
    assert state.done_action("new").output == {"id": 5}  # type: ignore[union-attr]
    assert [h["output"] for h in state.history(1)] == [{"id": 5}]
    state.dispose()
