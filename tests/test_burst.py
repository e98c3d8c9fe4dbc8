"""A burst of new changes the quick way: each CRM write one statement of its own, no state
query for each action; and the careful way again whenever a key or a write says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from crmflow.crm.database import CRM, RedoBatch
from crmflow.crm.demo import create_demo_crm
from crmflow.daemon.loop import Daemon
from crmflow.errors import ActionError
from crmflow.rules.entities import builtin_model
from crmflow.state.store import State
from tests.daemonkit import DEALS, ON_DEAL_UPDATE, Rig, watched_deals

BATCH = 8
BATCHES = -(-DEALS // BATCH)


@pytest.fixture
def rig(tmp_path: Path, database: str) -> Iterator[Rig]:
    rig = watched_deals(tmp_path, database)
    yield rig
    rig.close()


def _start(rig: Rig) -> Daemon:
    daemon = rig.start()
    daemon.batches.size = BATCH
    return daemon


def _burst(rig: Rig) -> None:
    rig.clock.advance(seconds=1)
    rig.write("UPDATE deals SET probability = 42, updated_at = {stamp} WHERE id >= 700")


def _statements(engine: Engine) -> list[str]:
    """Every statement sent through `engine` from now on (an executemany once)."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    return seen


def _activities(rig: Rig) -> dict[str, int]:
    rows = rig.sql(
        "SELECT related_id, count(*) FROM activities WHERE related_entity = 'note' "
        "GROUP BY related_id"
    )
    return {str(r[0]): int(r[1]) for r in rows}


def test_a_burst_costs_one_crm_statement_per_write_and_one_history_read_per_batch(
    rig: Rig,
) -> None:
    daemon = _start(rig)
    daemon.crm.table("activity")  # read from the catalogue once, before counting
    crm, state = _statements(daemon.crm.engine), _statements(daemon.state.engine)
    _burst(rig)
    assert rig.tick(seconds=1).changes == DEALS
    assert _activities(rig) == {str(700 + n): 1 for n in range(DEALS)}
    writes = [s for s in crm if s.startswith("INSERT INTO activities")]
    assert len(writes) == DEALS
    # No savepoint and no look-up of a key for each write: the batch's keys go in one
    # statement; besides, the poll reads the CRM, and SQLite begins each transaction.
    assert not [s for s in crm if "SAVEPOINT" in s or s.startswith("SELECT crmflow_applied")]
    keys = [s for s in crm if s.startswith("INSERT INTO crmflow_applied")]
    assert len(keys) == BATCHES
    others = [s for s in crm if s not in writes and s not in keys]
    assert len(others) <= BATCHES + 2, others
    # Whether an action was done: read once for each batch's records, not for each action.
    reads = [s for s in state if s.startswith("SELECT") and "FROM crmflow_history" in s]
    assert len(reads) == BATCHES
    assert rig.state("SELECT count(*) FROM crmflow_inflight") == [(0,)]
    assert rig.tick(seconds=1).changes == 0


def _back_to_where_it_was(rig: Rig, deal: int) -> None:
    """Deal `deal` changes, and then back to exactly the row it was (its stamp too): the
    same change again, with the same version and so the same keys."""
    (stamp,) = rig.sql(f"SELECT updated_at FROM deals WHERE id = {deal}")[0]
    rig.clock.advance(seconds=1)
    rig.write(f"UPDATE deals SET probability = 43, updated_at = {{stamp}} WHERE id = {deal}")
    rig.tick(seconds=1)
    rig.clock.advance(seconds=1)
    rig.write(f"UPDATE deals SET probability = 42, updated_at = '{stamp}' WHERE id = {deal}")


def test_an_action_done_before_is_known_from_the_batch_read_and_not_written_again(
    rig: Rig,
) -> None:
    daemon = _start(rig)
    _burst(rig)
    rig.tick(seconds=1)
    _back_to_where_it_was(rig, 700)
    crm = _statements(daemon.crm.engine)
    assert rig.tick(seconds=1).changes == 1
    assert not [s for s in crm if s.startswith("INSERT")]
    assert _activities(rig)["700"] == 2  # the first change and the one in between
    outcome, detail = [h for h in rig.history("watch") if h[0] != "fired"][-1]
    assert outcome == "skipped" and "already done" in detail


def test_a_key_applied_before_has_its_batch_made_again_each_write_once(rig: Rig) -> None:
    """The state no longer knows an action was done (its history pruned), the CRM does:
    the quick batch's keys meet it before the commit, the batch is rolled back and made
    again the careful way, in the same tick: that write is recognised, the others of
    its batch are made once."""
    _start(rig)
    _burst(rig)
    rig.tick(seconds=1)
    _back_to_where_it_was(rig, 700)
    rig.state("DELETE FROM crmflow_history")
    rig.write("UPDATE deals SET probability = 44, updated_at = {stamp} WHERE id IN (701, 702)")
    assert rig.tick(seconds=1).changes == 3
    assert "handling 3 changes again" in rig.out.getvalue()
    counts = _activities(rig)
    assert (counts["700"], counts["701"], counts["702"], counts["703"]) == (2, 2, 2, 1)
    outcomes = sorted(outcome for outcome, _ in rig.history("watch") if outcome != "fired")
    assert outcomes == ["done", "done", "skipped"]
    assert rig.state("SELECT count(*) FROM crmflow_inflight") == [(0,)]
    assert rig.tick(seconds=1).changes == 0


def test_a_refused_first_write_of_a_batch_is_made_alone_the_careful_way(rig: Rig) -> None:
    """Refused before the batch holds any write, nothing is lost: that write alone is
    made again in a savepoint of its own, and the batch goes on the quick way."""
    rig.rules(
        {
            "w.yaml": ON_DEAL_UPDATE.replace(
                "fields: [probability]}",
                "fields: [probability]}\nconditions: {id: {not_in: [700]}}",
            ),
            "bad.yaml": """
id: bad
entity: deal
trigger: {on: updated, fields: [probability]}
conditions: {id: 700}
actions:
  - create: {entity: activity, values: {kind: comment, subject: "taken"}}
""",
        }
    )
    rig.write("CREATE UNIQUE INDEX one_subject ON activities (subject)")
    rig.write("INSERT INTO activities (kind, subject) VALUES ('comment', 'taken')")
    _start(rig)
    _burst(rig)
    rig.tick(seconds=1)
    assert _activities(rig) == {str(700 + n): 1 for n in range(1, DEALS)}
    failed = [detail for outcome, detail in rig.history("bad") if outcome == "failed"]
    assert len(failed) == 1 and "refused" in failed[0]
    assert "again" not in rig.out.getvalue()


@pytest.fixture
def crm(database: str) -> Iterator[CRM]:
    create_demo_crm(database)
    crm = CRM(database, builtin_model())
    yield crm
    crm.dispose()


def _write(crm: CRM, key: str, subject: str) -> tuple[bool, Any]:
    return crm.once(
        key,
        lambda conn: crm.insert(conn, "activity", {"kind": "comment", "subject": subject}, None),
    )


def _subjects(crm: CRM) -> list[str]:
    with crm.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT subject FROM activities WHERE subject LIKE 'quick%%' ORDER BY subject"
        )
        return [str(r[0]) for r in rows]


def test_a_batch_of_new_keys_rolls_back_whole_when_a_key_was_applied_before(crm: CRM) -> None:
    _write(crm, "k-old", "quick old")
    with pytest.raises(RedoBatch), crm.batch(new_keys=True):
        ran, first = _write(crm, "k-1", "quick 1")
        assert ran
        assert _write(crm, "k-old", "quick old again")[0]  # not looked up: made
        assert _write(crm, "k-1", "quick 1 again") == (False, first)  # known in the batch
    assert _subjects(crm) == ["quick old"]
    # The careful way: the repeat recognised, the new key made.
    with crm.batch():
        assert _write(crm, "k-1", "quick 1")[0]
        ran, _ = _write(crm, "k-old", "quick old again")
        assert not ran
    assert _subjects(crm) == ["quick 1", "quick old"]


def test_a_write_failing_inside_a_batch_of_new_keys_rolls_it_back_whole(crm: CRM) -> None:
    def failing(conn: Any) -> Any:
        crm.insert(conn, "activity", {"kind": "comment", "subject": "quick half"}, None)
        raise ActionError("the action's own failure, after a statement")

    with pytest.raises(RedoBatch), crm.batch(new_keys=True):
        # The first write of a batch fails: there is nothing to roll back but its own.
        with pytest.raises(ActionError):
            crm.once("k-0", failing)
        assert _write(crm, "k-1", "quick 1")[0]
        with pytest.raises(RedoBatch):
            crm.once("k-2", failing)
        with pytest.raises(RedoBatch):  # the batch refuses to go on, and to commit
            _write(crm, "k-3", "quick 3")
        with pytest.raises(RedoBatch):
            crm.commit_batch()
    assert _subjects(crm) == []
    assert not crm.was_applied("k-1")


def test_done_actions_read_for_a_batch_answer_while_one_of_its_records_is_handled(
    database: str,
) -> None:
    state = State(database)
    try:
        state.record("done", workflow="w", entity="deal", record_id=1, key="k1", output={"id": 5})
        state.record("done", workflow="w", entity="deal", record_id=9, key="k9")
        reads = _statements(state.engine)
        with state.unit():
            state.know_done("deal", ["1", "2"])
            assert len(reads) == 1
            with state.handling("deal", 1):
                found = state.done_action("k1")
                assert found is not None and found.output == {"id": 5}
                assert state.done_action("k-new") is None
            with state.handling("deal", 2):
                state.record("done", workflow="w", entity="deal", record_id=2, key="k2")
                state.checkpoint()  # flushed and committed: still known
                assert state.done_action("k2") is not None
            assert len([s for s in reads if "FROM crmflow_history" in s]) == 1
            # A record whose done actions were not read: asked of the database.
            with state.handling("deal", 9):
                assert state.done_action("k9") is not None
            assert state.done_action("k9") is not None
            assert len([s for s in reads if "FROM crmflow_history" in s]) == 3
    finally:
        state.dispose()
