"""A locked CRM database is a transient failure: the write is retried, then done once.

Another application holds the real SQLite file (`BEGIN EXCLUSIVE`, or a writer's
`BEGIN IMMEDIATE`) while an action writes. The CRM's engine is opened with a 50 ms busy
timeout (crmflow has no setting for it; the driver's default waits 5 s), so the write
gives up at once; the injected `sleep` between tries is where the other application
lets go, so no test waits on a thread or a wall clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from crmflow.config import Config, load_config
from crmflow.crm.database import CRM
from crmflow.crm.failures import CrmUnavailable
from crmflow.engine.effects.base import Services
from crmflow.engine.evaluate import Evaluator, Plan
from crmflow.engine.events import parse_event
from crmflow.engine.execute import Executor
from crmflow.errors import ActionError
from crmflow.rules.ruleset import load_ruleset
from crmflow.state.store import PendingStatus, State
from tests.crmkit import NOW, Project, make_project

WORKFLOW = """
id: follow-up
entity: deal
trigger: {on: updated, fields: [probability]}
actions:
  - id: t
    create:
      entity: task
      values: {title: "Call about {{ deal.name }}", related_entity: deal, related_id: "{{ deal.id }}"}
"""
EVENT = {
    "entity": "deal",
    "event": "updated",
    "record": {"id": 3, "name": "Alpenblick", "probability": 70},
    "previous": {"id": 3, "name": "Alpenblick", "probability": 60},
    "actor": 1,
    "at": "2026-11-22T10:00:00Z",
}
TASKS = "SELECT id FROM tasks WHERE title LIKE 'Call about Alpenblick%'"


class Lock:
    """Another application's transaction on the CRM file, held until released."""

    def __init__(self, path: Path, kind: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"BEGIN {kind}")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("COMMIT")
            self.held = False

    def close(self) -> None:
        self.release()
        self.conn.close()


@dataclass
class Wired:
    """The executor over the demo CRM, with a busy timeout of 50 ms and a test's sleep."""

    project: Project
    config: Config
    crm: CRM
    state: State
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.on_sleep()

    def executor(self, *, inline_retries: bool = True) -> Executor:
        services = Services(self.config, self.crm, clock=lambda: NOW, sleep=self.sleep)
        return Executor(services, self.state, inline_retries=inline_retries)

    def evaluate(self, executor: Executor) -> Plan:
        rules = load_ruleset(self.config.rules, self.config)
        evaluator = Evaluator(
            rules, self.config.timezone, performer=executor, related=self.crm.related
        )
        return evaluator.evaluate(parse_event(EVENT, self.config.model), NOW)

    def history(self) -> list[tuple[str, str]]:
        rows = self.project.state_sql(
            "SELECT outcome, detail FROM crmflow_history WHERE action_type = 'create' ORDER BY id"
        )
        return [(r[0], r[1]) for r in rows]


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[Wired]:
    project = make_project(tmp_path)
    project.rules({"w.yaml": WORKFLOW})
    config = load_config(tmp_path / "crmflow.yaml")
    engine = create_engine(project.crm_url, connect_args={"timeout": 0.05})
    crm = CRM(project.crm_url, config.model, engine=engine, clock=lambda: NOW)
    crm.table("task")  # read before the lock, as a running daemon has long done
    state = State(config.state_url, clock=lambda: NOW)
    yield Wired(project, config, crm, state)
    crm.dispose()
    state.dispose()
    project.close()


@pytest.fixture(params=["EXCLUSIVE", "IMMEDIATE"])
def lock(request: pytest.FixtureRequest, wired: Wired) -> Iterator[Lock]:
    """EXCLUSIVE keeps readers out too; IMMEDIATE (a writer mid-transaction) lets the
    applied-key check read and fails the insert itself."""
    held = Lock(wired.project.db, request.param)
    yield held
    held.close()


def test_eval_retries_a_locked_crm_and_creates_the_record_once(wired: Wired, lock: Lock) -> None:
    wired.on_sleep = lock.release  # the other application commits while we wait
    plan = wired.evaluate(wired.executor())
    (action,) = plan.rules[0].actions
    assert (action.status, action.output) == ("done", {"id": action.output["id"]})
    assert action.result == f"created task {action.output['id']}"
    assert len(wired.sleeps) == 1 and 0 < wired.sleeps[0] <= 0.01  # retry.base_delay 10ms
    (retried, done) = wired.history()
    assert retried[0] == "retried"
    assert retried[1].startswith(
        "attempt 1: CRM unavailable, write rolled back: database is locked"
    )
    assert done == ("done", action.result)
    assert wired.project.sql(TASKS) == [(action.output["id"],)]
    assert wired.project.sql("SELECT count(*) FROM crmflow_applied") == [(1,)]


def test_one_try_on_a_locked_crm_is_a_transient_failure_that_wrote_nothing(
    wired: Wired, lock: Lock
) -> None:
    executor = wired.executor(inline_retries=False)
    rules = load_ruleset(wired.config.rules, wired.config)
    workflow = rules.workflows[0]
    params = {"entity": "task", "values": {"title": "Call about Alpenblick"}}
    event = parse_event(EVENT, wired.config.model)
    outcome = executor.attempt(workflow, workflow.actions[0], event, params, "k1", NOW)
    assert (outcome.status, outcome.transient) == ("failed", True)
    assert "database is locked" in outcome.detail
    # Not recorded as failed: whoever tried decides whether to retry or give up.
    assert wired.history() == []
    lock.release()
    assert wired.project.sql(TASKS) == []
    assert wired.project.sql("SELECT count(*) FROM crmflow_applied") == [(0,)]


def test_the_daemon_stores_a_locked_write_as_a_retry_and_does_it_once_later(
    wired: Wired, lock: Lock
) -> None:
    executor = wired.executor(inline_retries=False)
    plan = wired.evaluate(executor)
    (action,) = plan.rules[0].actions
    assert action.status == "scheduled" and "database is locked" in (action.result or "")
    (row,) = wired.state.pending_actions()
    assert (row.status, row.attempts) == (PendingStatus.PENDING, 1)
    assert row.last_error is not None and "database is locked" in row.last_error
    assert [o for o, _ in wired.history()] == ["retried"]

    lock.release()
    later = NOW + timedelta(seconds=5)
    (due,) = wired.state.claim_due(later, "test", 60)
    workflow = load_ruleset(wired.config.rules, wired.config).workflows[0]
    said = executor.fire_pending(due, workflow, later)
    ((task_id,),) = wired.project.sql(TASKS)  # created once, on the second try
    assert said == f"done: created task {task_id}"
    assert wired.state.get_pending(row.id).status == PendingStatus.DONE  # type: ignore[union-attr]
    assert [o for o, _ in wired.history()] == ["retried", "done"]


def test_a_constraint_violation_stays_a_permanent_failure(wired: Wired) -> None:
    wired.project.sql("CREATE UNIQUE INDEX tasks_title ON tasks (title)")
    wired.project.sql("INSERT INTO tasks (title) VALUES ('Call about Alpenblick')")
    plan = wired.evaluate(wired.executor())
    (action,) = plan.rules[0].actions
    assert action.status == "failed"
    assert action.result == "the CRM refused the write: UNIQUE constraint failed: tasks.title"
    assert wired.sleeps == []  # not retried
    assert wired.history() == [("failed", action.result)]


def _raise(exc: Exception) -> Callable[[Connection], Any]:
    def work(conn: Connection) -> Any:
        raise exc

    return work


class _PlainDriverError(Exception):
    """A driver's error without SQLSTATE or SQLite code: its words are all there is."""


def _error(
    wrapper: type[DBAPIError], orig: Exception, temporary: bool, name: str, **kw: Any
) -> Any:
    """A driver's exception as SQLAlchemy raises it, statement and all."""
    return pytest.param(wrapper("INSERT INTO tasks ...", {}, orig, **kw), temporary, id=name)


REFUSED = 'connection to server at "127.0.0.1", port 5432 failed: Connection refused'


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        _error(OperationalError, sqlite3.OperationalError("database is locked"), True, "busy"),
        _error(
            OperationalError, sqlite3.OperationalError("database table is locked"), True, "locked"
        ),
        _error(
            OperationalError, sqlite3.OperationalError("no such table: tasks"), False, "no-table"
        ),
        _error(OperationalError, psycopg.OperationalError(REFUSED), True, "pg-refused"),
        _error(
            OperationalError,
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            True,
            "pg-terminated",
        ),
        _error(
            OperationalError,
            psycopg.errors.SerializationFailure("could not serialize access"),
            True,
            "pg-serialization",
        ),
        _error(OperationalError, psycopg.errors.DeadlockDetected("x"), True, "pg-deadlock"),
        _error(OperationalError, psycopg.errors.LockNotAvailable("x"), True, "pg-lock-timeout"),
        _error(OperationalError, psycopg.errors.QueryCanceled("x"), False, "pg-statement-timeout"),
        _error(OperationalError, _PlainDriverError("connection refused"), True, "words-refused"),
        _error(
            DBAPIError,
            psycopg.InterfaceError("the connection is closed"),
            True,
            "invalidated",
            connection_invalidated=True,
        ),
        _error(DBAPIError, psycopg.InterfaceError("x"), False, "interface"),
        _error(
            IntegrityError,
            psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
            False,
            "pg-unique",
        ),
        _error(
            IntegrityError,
            sqlite3.IntegrityError("NOT NULL constraint failed: tasks.title"),
            False,
            "not-null",
        ),
    ],
)
def test_which_failed_writes_may_pass(wired: Wired, error: DBAPIError, temporary: bool) -> None:
    with pytest.raises(ActionError) as raised:
        wired.crm.once("k", _raise(error))
    assert isinstance(raised.value, CrmUnavailable) is temporary
    assert "\n" not in str(raised.value)  # one line, the driver's, never the statement
    assert "INSERT" not in str(raised.value)


def test_a_key_applied_by_another_process_meanwhile_gives_its_result(wired: Wired) -> None:
    # The other process commits the same key between our check and our insert: ours
    # collides on crmflow_applied's key, and the earlier result is the output.
    def work(conn: Connection) -> Any:
        wired.project.sql(
            "INSERT INTO crmflow_applied (key, applied_at, result) VALUES ('k', 'x', '{\"id\": 7}')"
        )
        return 8

    assert wired.crm.once("k", work) == (False, {"id": 7})
