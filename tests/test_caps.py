"""A workflow's blast-radius cap (`limit: {max, per}`): past it the workflow pauses
itself, says why, tells the admins, and holds its actions (not dropped) until
`crmflow resume WORKFLOW` releases them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import crmflow_bin
from tests.daemonkit import Rig, make_rig

RULES = {
    "touch.yaml": """
        id: touch
        entity: deal
        trigger: {on: updated, fields: [probability]}
        limit: {max: 3, per: 1h}
        actions:
          - update: {values: {name: "touched {{ deal.id }}"}}
        """,
}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path)
    rig.rules(RULES)
    rig.configure("admins: [3]\n")  # user 3 of the demo: management
    rig.start()
    yield rig
    rig.close()


def names(rig: Rig) -> list[str]:
    return [r[0] for r in rig.sql("SELECT name FROM deals ORDER BY id")]


def cli(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [crmflow_bin(), *args], cwd=rig.folder, capture_output=True, text=True, timeout=60
    )


def test_a_workflow_over_its_limit_pauses_itself_and_holds_its_actions(rig: Rig) -> None:
    rig.write("UPDATE deals SET probability = 99, updated_at = {stamp} WHERE id <= 8")
    rig.tick(seconds=5)
    touched = [n for n in names(rig) if n.startswith("touched")]
    assert len(touched) == 3  # the limit; the other five are held, not dropped
    held = rig.state("SELECT count(*) FROM crmflow_pending WHERE workflow = 'touch'")
    assert held == [(5,)]
    history = rig.history("touch")
    outcomes = [o for o, _ in history]
    assert outcomes.count("fired") == 8
    assert next(d for o, d in history if o == "held").startswith("limit reached: 3 runs")
    done = [d for o, d in history if o == "done"]
    assert len([d for d in done if d.startswith("admins: ")]) == 1 and len(done) == 4
    # The admins are told, once, why.
    told = rig.sql(
        "SELECT user_id, subject, body FROM notifications WHERE user_id = 3 "
        "AND subject LIKE 'crmflow:%'"
    )
    assert len(told) == 1 and told[0][1] == "crmflow: workflow touch paused itself"
    assert "limit reached: 3 runs since" in told[0][2]
    status = cli(rig, "status")
    assert "held:         touch: limit reached: 3 runs since" in status.stdout
    # Held, due actions wait too.
    rig.tick(seconds=5)
    assert len([n for n in names(rig) if n.startswith("touched")]) == 3
    released = cli(rig, "resume", "touch")
    assert released.returncode == 0 and released.stdout.strip() == "resumed touch"
    rig.tick(seconds=5)
    assert len([n for n in names(rig) if n.startswith("touched")]) == 8
    assert cli(rig, "resume", "touch").returncode == 2  # not held any more
