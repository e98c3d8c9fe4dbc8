"""Template bombs in workflow files (SPEC §9): lint names each where its constants show it,
and where only the data can tell, the action fails with the reason at run time, the other
workflows and events go on, within the time and memory every hostile case gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_hostile_yaml import PEAK_MB, SECONDS, lint_capped

HEAD = 'id: {id}\nentity: deal\ntrigger: {{on: created}}\nactions:\n  - warn: "{template}"\n'

# Seen from the template's constants: a lint error at the template's position.
VISIBLE = {
    "repeat": "{{ ('x' * 1000000) * 1000 }}",
    "list": "{{ [0] * 100000000 }}",
    "range": "{{ range(10**9) | list | length }}",
    "nested-loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
    "{% endfor %}",
    "power-tower": "{{ ((10 ** 1000) ** 1000) ** 1000 }}",
}


@pytest.mark.parametrize("name", sorted(VISIBLE))
def test_a_visible_template_bomb_is_one_lint_finding(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    target = folder / f"{name}.yaml"
    target.write_text(HEAD.format(id=name, template=VISIBLE[name]))
    run = lint_capped(target)
    assert run.code == 1, run.lines
    assert len(run.lines) == 2, run.lines
    assert run.lines[0].startswith(f"{target}:5:11: CF224 {name}: template goes over"), run.lines
    assert run.seconds < SECONDS and run.peak_mb < PEAK_MB


# Only the data can tell: lint passes them, a run fails the action with the reason.
HIDDEN = {
    "doubling": "{% set s = namespace(v=deal.name) %}{% for i in range(60) %}"
    "{% set s.v = s.v + s.v %}{% endfor %}{{ s.v }}",
    "squaring": "{% set s = namespace(v=deal.amount) %}{% for i in range(64) %}"
    "{% set s.v = s.v * s.v %}{% endfor %}{{ s.v > 0 }}",
    "data-range": "{{ range(deal.amount) | list | length }}",
}


def test_a_data_driven_bomb_fails_its_action_and_the_rest_goes_on(tmp_path: Path) -> None:
    import resource
    import subprocess

    from tests.conftest import crmflow_bin

    folder = tmp_path / "rules"
    folder.mkdir()
    for name, template in HIDDEN.items():
        (folder / f"{name}.yaml").write_text(HEAD.format(id=name, template=template))
    (folder / "fine.yaml").write_text(HEAD.format(id="fine", template="{{ deal.name }}"))
    assert subprocess.run([crmflow_bin(), "lint", "rules"], cwd=tmp_path).returncode == 0
    events = "\n".join(
        json.dumps({"entity": "deal", "event": "created", "record": record})
        for record in (
            {"id": 1, "name": "ab", "amount": 10**7},
            {"id": 2, "name": "Acme", "amount": 3},
        )
    )

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [crmflow_bin(), "eval", "--dry-run", "--format", "json"],
        input=events,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        preexec_fn=cap,
    )
    assert proc.returncode == 0, proc.stderr
    plans = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(plans) == 2

    def action(plan: dict, rule: str) -> dict:
        return next(r for r in plan["rules"] if r["rule"] == rule)["actions"][0]

    first, second = plans
    assert "over 1,000,000 items or characters" in action(first, "doubling")["error"]
    assert "over 100,000 bits" in action(first, "squaring")["error"]
    assert "100,000 steps" in action(first, "data-range")["error"]
    assert action(first, "fine")["params"]["message"] == "ab"
    # The next event renders as it should: the bounds are per rendering.
    assert (
        action(second, "data-range")["params"]["message"] == 3
    )  # a single expression keeps its type
    assert action(second, "fine")["params"]["message"] == "Acme"
