"""Per-plan state lives on the plan: a failed action never skips another plan's actions.

Regression for REDESIGN §1.6: the Executor used to key "an earlier action of this workflow
failed" by id(plan) for its whole life, and CPython reuses the address of a freed plan, so
later unrelated plans were skipped. Whether an address is reused depends on the allocator;
the interleaved variants leave one failed plan every eleven changes, which made the old
code skip actions on every run tried, where a single failure only did on some.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.crmkit import Project, make_project
from tests.daemonkit import Rig, make_rig

COUNT = 400
EVERY = 11  # the interleaved variants: every eleventh change fails (40 in 440)

FAILS = """
id: fails
entity: deal
trigger: {on: [created, updated]}
conditions: {name: FAIL}
actions:
  - update: {values: {id: 1}}  # passes lint, fails when carried out
"""

WORKS = """
id: works
entity: deal
trigger: {on: [created, updated]}
conditions: {name: OK}
actions:
  - generate_code: {length: 6}
"""


@pytest.fixture
def project(tmp_path: Path, database: str) -> Iterator[Project]:
    project = make_project(tmp_path, database)
    project.rules({"fails.yaml": FAILS, "works.yaml": WORKS})
    yield project
    project.close()


@pytest.fixture
def rig(tmp_path: Path, database: str) -> Iterator[Rig]:
    rig = make_rig(tmp_path, database)
    rig.rules({"fails.yaml": FAILS, "works.yaml": WORKS})
    yield rig
    rig.close()


def deal_update(deal_id: int, name: str) -> dict[str, Any]:
    record = {"id": deal_id, "name": name, "stage": "qualification"}
    return {"entity": "deal", "event": "updated", "record": record, "previous": {**record}}


def outcomes(rows: list[tuple[Any, ...]]) -> Counter[str]:
    return Counter(str(row[0]) for row in rows)


def action_outcomes(db: Any, workflow: str) -> Counter[str]:
    """History outcomes of one workflow's actions (its fired/not_fired rows left out)."""
    return outcomes(
        db(
            "SELECT outcome FROM crmflow_history "
            f"WHERE workflow = '{workflow}' AND action_index IS NOT NULL"
        )
    )


def statuses(plans: list[dict[str, Any]], workflow: str) -> Counter[str]:
    return Counter(
        action["status"]
        for plan in plans
        for rule in plan["rules"]
        if rule["rule"] == workflow and rule["matched"]
        for action in rule["actions"]
    )


# -- crmflow eval -------------------------------------------------------------------------
def test_eval_one_failure_then_many_plans_of_another_workflow(project: Project) -> None:
    events = [deal_update(1, "FAIL")] + [deal_update(1000 + i, "OK") for i in range(COUNT)]
    code, plans, _ = project.eval(*events)
    assert code == 3  # the one failure
    assert statuses(plans, "works") == {"done": COUNT}
    assert statuses(plans, "fails") == {"failed": 1}
    assert action_outcomes(project.state_sql, "works") == {"done": COUNT}
    assert action_outcomes(project.state_sql, "fails") == {"failed": 1}


def test_eval_interleaved_failures_skip_only_their_own_plans(project: Project) -> None:
    total = COUNT + COUNT // (EVERY - 1)
    names = ["FAIL" if i % EVERY == 0 else "OK" for i in range(total)]
    code, plans, _ = project.eval(*(deal_update(1000 + i, n) for i, n in enumerate(names)))
    assert code == 3
    assert statuses(plans, "works") == {"done": COUNT}
    assert statuses(plans, "fails") == {"failed": total - COUNT}
    assert action_outcomes(project.state_sql, "works") == {"done": COUNT}


# -- the daemon ---------------------------------------------------------------------------
def insert_deals(rig: Rig, count: int, name_sql: str) -> None:
    """`count` new deals (ids 1001...) in one write; `name_sql` is an SQL expression of v."""
    rig.write(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n "
        f"WHERE v < {count}) INSERT INTO deals (id, name, updated_at) "
        f"SELECT 1000 + v, {name_sql}, {{stamp}} FROM n"
    )


def test_daemon_one_failure_then_many_changes_of_another_workflow(rig: Rig) -> None:
    rig.start()
    rig.clock.advance(seconds=2)
    # One poll: the failing change first (rows sharing a timestamp come in id order).
    rig.write(
        "UPDATE deals SET name = 'FAIL', updated_at = {stamp}, updated_by = {by} WHERE id = 1"
    )
    insert_deals(rig, COUNT, "'OK'")
    assert rig.tick(seconds=1).changes == COUNT + 1
    assert action_outcomes(rig.state, "works") == {"done": COUNT}
    assert action_outcomes(rig.state, "fails") == {"failed": 1}


def test_daemon_interleaved_failures_skip_only_their_own_plans(rig: Rig) -> None:
    rig.start()
    rig.clock.advance(seconds=2)
    total = COUNT + COUNT // (EVERY - 1)
    insert_deals(rig, total, f"CASE WHEN v % {EVERY} = 0 THEN 'FAIL' ELSE 'OK' END")
    assert rig.tick(seconds=1).changes == total
    assert action_outcomes(rig.state, "works") == {"done": COUNT}
    assert action_outcomes(rig.state, "fails") == {"failed": total - COUNT}
