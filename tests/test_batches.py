"""A poll's changes in batches: one state transaction per batch, and nothing lost or done
twice when the daemon dies inside one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crmflow.daemon.loop import Daemon
from tests.daemonkit import DEALS, ON_DEAL_UPDATE, Rig, watched_deals

BATCH = 8


class Killed(BaseException):
    """Stands for SIGKILL: no fault handling, no clean-up beyond what the OS does."""


@pytest.fixture
def rig(tmp_path: Path, database: str) -> Iterator[Rig]:
    rig = watched_deals(tmp_path, database)
    yield rig
    rig.close()


def _burst(rig: Rig) -> None:
    rig.clock.advance(seconds=1)
    rig.write("UPDATE deals SET probability = 42, updated_at = {stamp} WHERE id >= 700")


def _per_deal(rig: Rig, query: str) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in rig.sql(query)}


def _done_keys(rig: Rig) -> list[Any]:
    return rig.state(
        "SELECT key, count(*) FROM crmflow_history WHERE workflow = 'watch' "
        "AND outcome = 'done' GROUP BY key"
    )


def _start(rig: Rig) -> Daemon:
    daemon = rig.start()
    daemon.batches.size = BATCH  # a burst of 30 is 4 batches
    return daemon


def test_a_burst_is_handled_in_batches_each_change_once(rig: Rig) -> None:
    _start(rig)
    _burst(rig)
    assert rig.tick(seconds=1).changes == DEALS
    activities = _per_deal(
        rig,
        "SELECT related_id, count(*) FROM activities WHERE related_entity = 'note' "
        "GROUP BY related_id",
    )
    assert activities == {str(700 + n): 1 for n in range(DEALS)}
    assert [n for _, n in _done_keys(rig)] == [1] * DEALS
    assert rig.state("SELECT count(*) FROM crmflow_inflight") == [(0,)]
    assert rig.tick(seconds=1).changes == 0  # snapshots saved: nothing is seen twice


@pytest.mark.parametrize("killed_at", [1, 11, 30])
def test_a_daemon_killed_inside_a_batch_finishes_it_with_the_same_keys(
    rig: Rig, killed_at: int
) -> None:
    """Killed while handling change `killed_at` (inside the second batch, or the last):
    the changes of the batches before are recorded, those of its batch are marked in
    hand, and the CRM writes its batch had made went with its open CRM transaction; a
    new daemon handles them again under the same keys, each written once."""
    daemon = _start(rig)
    handle, calls = daemon.batches.handle, [0]

    def dying(change: Any, now: Any) -> Any:
        calls[0] += 1
        if calls[0] == killed_at:
            raise Killed
        return handle(change, now)

    daemon.batches.handle = dying
    _burst(rig)
    with pytest.raises(Killed):
        rig.tick(seconds=1)
    batch_start = (killed_at - 1) // BATCH * BATCH
    marked = rig.state("SELECT count(*) FROM crmflow_inflight")[0][0]
    assert marked == min(BATCH, DEALS - batch_start)
    # The CRM holds the writes of the batches before, as the state holds their records.
    assert rig.sql("SELECT count(*) FROM activities WHERE related_entity = 'note'") == [
        (batch_start,)
    ]

    _start(rig)  # a new daemon over the same state
    rig.tick(seconds=1)
    activities = _per_deal(
        rig,
        "SELECT related_id, count(*) FROM activities WHERE related_entity = 'note' "
        "GROUP BY related_id",
    )
    assert activities == {str(700 + n): 1 for n in range(DEALS)}
    keys = _done_keys(rig)
    skipped = rig.state(
        "SELECT count(*) FROM crmflow_history WHERE workflow = 'watch' AND outcome = 'skipped'"
    )[0][0]
    assert len(keys) == DEALS
    assert skipped == 0
    assert rig.state("SELECT count(*) FROM crmflow_inflight") == [(0,)]
    assert rig.tick(seconds=1).changes == 0


def test_crm_writes_committed_before_their_records_are_recognised_after_a_kill(
    rig: Rig,
) -> None:
    """Killed after the second batch's CRM transaction committed and before its state
    unit did: its writes are in the CRM, their records are not. A new daemon handles
    those changes again and recognises each write by its key (skipped), none repeated."""
    daemon = _start(rig)
    commit, calls = daemon.crm.commit_batch, [0]

    def dying() -> None:
        # Called before each commit of a batch's unit, after its CRM batch has ended.
        calls[0] += 1
        commit()
        if calls[0] == 2:
            raise Killed

    daemon.crm.commit_batch = dying  # type: ignore[method-assign]
    _burst(rig)
    with pytest.raises(Killed):
        rig.tick(seconds=1)
    assert rig.sql("SELECT count(*) FROM activities WHERE related_entity = 'note'") == [
        (2 * BATCH,)
    ]
    assert rig.state("SELECT count(*) FROM crmflow_inflight") == [(BATCH,)]

    _start(rig)
    rig.tick(seconds=1)
    activities = _per_deal(
        rig,
        "SELECT related_id, count(*) FROM activities WHERE related_entity = 'note' "
        "GROUP BY related_id",
    )
    assert activities == {str(700 + n): 1 for n in range(DEALS)}
    skipped = rig.state(
        "SELECT count(*) FROM crmflow_history WHERE workflow = 'watch' AND outcome = 'skipped'"
    )[0][0]
    assert len(_done_keys(rig)) + skipped == DEALS
    assert skipped == BATCH


def test_a_refused_write_rolls_back_alone_inside_a_batch(rig: Rig) -> None:
    """One change's write refused by the CRM (a constraint): that action fails, the
    other writes of its batch are kept."""
    rig.rules(
        {
            "w.yaml": ON_DEAL_UPDATE,
            "bad.yaml": """
id: bad
entity: deal
trigger: {on: updated, fields: [probability]}
conditions: {id: 703}
actions:
  - create: {entity: activity, values: {kind: comment, subject: "watch 701"}}
""",
        }
    )
    # The second "watch 701" is refused, after the first was written in the same batch.
    rig.write("CREATE UNIQUE INDEX one_subject ON activities (subject)")
    _start(rig)
    _burst(rig)
    rig.tick(seconds=1)
    assert rig.sql("SELECT count(*) FROM activities WHERE related_entity = 'note'") == [(DEALS,)]
    failed = rig.state(
        "SELECT detail FROM crmflow_history WHERE workflow = 'bad' AND outcome = 'failed'"
    )
    assert len(failed) == 1 and "refused" in str(failed[0][0])
