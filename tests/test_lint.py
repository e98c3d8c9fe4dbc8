"""lint: each stage, each finding code, positions, formats and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

Cli = Callable[..., Result]
Rules = Callable[..., Path]

GOOD = """\
id: good
entity: deal
trigger: {on: updated, fields: [stage]}
conditions:
  stage: {changed_to: won}
actions:
  - notify: {to: [owner], subject: "Won: {{ deal.name }}"}
"""


def lint(cli: Cli, rules_dir: Rules, text: str, *args: str) -> Result:
    rules_dir({"w.yaml": text})
    return cli("lint", "rules", *args)


def test_clean_files_exit_0(cli: Cli, rules_dir: Rules) -> None:
    result = lint(cli, rules_dir, GOOD)
    assert result.code == 0, result.out + result.err
    assert result.out.strip() == "1 file, 1 workflow: no problems"


# (workflow text, expected finding line without the file name prefix)
FINDINGS = [
    ("id: w\nentity: deal\ntrigger: {on: created}\nactions: [\n", ":5:1: CF001 invalid YAML"),
    ("id: w\nid: v\n", ":2:1: CF002 duplicate key 'id' (first defined at line 1)"),
    ("- a\n- b\n", ":1:1: CF003 a workflow document must be a mapping"),
    (
        "id: w\nentity: deal\ntrigger: {on: created, fieldz: [a]}\nactions: [{warn: x}]\n",
        ":3:24: CF101 w: trigger: unknown trigger key 'fieldz' (did you mean 'fields'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\n",
        ":1:1: CF102 w: missing required key 'actions'",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: warn\n",
        ":4:10: CF103 w: actions: must be a list, not a string",
    ),
    (
        "id: W X\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n",
        ":1:5: CF104 W X: id: 'W X' is not valid: expected lowercase letters, digits, - and _",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {amount: {gtt: 5}}\n"
        "actions: [{warn: x}]\n",
        ":4:23: CF101 w: conditions.amount: unknown operator 'gtt' (did you mean 'gt'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {amount: {gt: [5]}}\n"
        "actions: [{warn: x}]\n",
        ":4:27: CF103 w: conditions.amount.gt: a list is not allowed here: expected a number or a string or {field: another_field}",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - warn: x\n    delay: 14 days\n",
        ":6:12: CF104 w: actions[0].delay: '14 days' is not valid: expected a duration",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - warn: x\n    email: {to: a, subject: b}\n",
        ":5:5: CF104 w: actions[0]: takes exactly one of",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - notfy: {to: 1}\n",
        ":5:5: CF101 w: actions[0]: unknown action type or key 'notfy' (did you mean 'notify'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created, offset: 1d}\nactions: [{warn: x}]\n",
        ":3:24: CF104 w: trigger: 'offset' only goes with date",
    ),
    (
        "id: w\nentity: dael\ntrigger: {on: created}\nactions: [{warn: x}]\n",
        ":2:9: CF202 w: unknown entity 'dael' (did you mean 'deal'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {amout: 5}\nactions: [{warn: x}]\n",
        ":4:14: CF203 w: amout: deal has no field 'amout' (did you mean 'amount'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {compny.name: x}\n"
        "actions: [{warn: x}]\n",
        ":4:14: CF204 w: compny.name: deal has no relation 'compny' (did you mean 'company'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {company.cuntry: x}\n"
        "actions: [{warn: x}]\n",
        ":4:14: CF203 w: company.cuntry: company has no field 'cuntry' (did you mean 'country'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: '{{ deal.name }'}]\n",
        ":4:18: CF205 w: template syntax error",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: '{{ dael.name }}'}]\n",
        ":4:18: CF206 w: template name 'dael' is not defined",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: '{{ deal.nme }}'}]\n",
        ":4:18: CF203 w: nme: deal has no field 'nme' (did you mean 'name'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - warn: '{{ steps.code.code }}'\n"
        "  - id: code\n    generate_code: {}\n",
        ":5:11: CF207 w: steps.code names no earlier action id",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {x: {before: '2026-13-45'}}\n"
        "actions: [{warn: x}]\n",
        ":4:26: CF208 w: before: '2026-13-45' is neither an ISO date nor an offset",
    ),
    (
        "id: w\nentity: deal\ntrigger: {schedule: '0 25 * * *'}\nactions: [{warn: x}]\n",
        ":3:21: CF209 w: hour 25 is out of range 0-23",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {stage: {changed_to: won}}\n"
        "actions: [{warn: x}]\n",
        ":4:22: CF211 warning: w: stage changed_to won can never hold",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{set_stage: wonn}]\n",
        ":4:23: CF212 w: set_stage: deal has no stage 'wonn'",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {name: {matches: '(unclosed'}}\n"
        "actions: [{warn: x}]\n",
        ":4:30: CF213 w: invalid regular expression '(unclosed'",
    ),
    (
        "id: w\nentity: deal\ntrigger: {date: name, offset: 1y}\nactions: [{warn: x}]\n",
        ":3:17: CF214 w: trigger.date: name is a string field, not a date",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - {id: a, warn: x}\n"
        "  - {id: a, warn: y}\n",
        ":6:10: CF215 w: action id 'a' is used twice",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created, fields: [amount]}\nactions: [{warn: x}]\n",
        ":3:24: CF216 warning: w: trigger.fields only filters updates",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {name: {before: -1d}}\n"
        "actions: [{warn: x}]\n",
        ":4:21: CF217 warning: w: before compares dates, and name is a string field",
    ),
    (
        "id: w\nentity: user\ntrigger: {on: created}\nactions: [{set_stage: x}]\n",
        ":4:23: CF219 w: set_stage: user has no pipeline",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions: {amount: {gt: '100'}}\n"
        "actions: [{warn: x}]\n",
        ':4:27: CF220 w: amount gt "100" can never hold: "100" is a string, not a number '
        '(write 100, not "100")',
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: updated}\nconditions: {stage: {changed_to: wonn}}\n"
        "actions: [{warn: x}]\n",
        ":4:34: CF212 w: stage changed_to: deal has no stage 'wonn' (stages: qualification, "
        "proposal, negotiation, won, lost) (did you mean 'won'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - notify: {to: [ownr], subject: x}\n",
        ":5:19: CF221 w: notify.to: 'ownr' is not a recipient (a user id, owner, actor, "
        "role:NAME, an e-mail address or a template) (did you mean 'owner'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: updated}\nactions:\n  - wait: {until: {amount: "
        "{gt: 5}}}\n  - warn: x\n",
        ":5:12: CF223 warning: w: wait: until without on_met: when until holds, the actions "
        "after the wait go on (on_met defaults to continue)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - create: {entity: tsk, values: {}}\n",
        ":5:22: CF202 w: create: unknown entity 'tsk' (did you mean 'task'?)",
    ),
    (
        "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n  - update: {target: company, "
        "values: {nme: x}}\n",
        ":5:40: CF203 w: company has no field 'nme'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FINDINGS)
def test_findings(cli: Cli, rules_dir: Rules, text: str, expected: str) -> None:
    result = lint(cli, rules_dir, text)
    lines = result.out.splitlines()
    assert any(line.startswith("rules/w.yaml" + expected) for line in lines), result.out
    severity = "warning" if " warning: " in expected else "error"
    assert result.code == (1 if severity == "error" else 0)
    assert "Traceback" not in result.err


def test_every_semantic_code_is_exercised() -> None:
    from crmflow.findings import SEMANTIC_CODES

    tested = {line.split()[1] for _, line in FINDINGS}
    untested = set(SEMANTIC_CODES) - tested
    # Each has its own test (CF222 needs a crmflow.yaml, CF224 has its own table of
    # templates: tests/test_lint_types.py; CF225 and CF226 need a crmflow.yaml too:
    # tests/test_workdays.py, tests/test_sms.py; CF227 a file beside the workflow:
    # tests/test_document.py; CF228 and CF229 have their tables in tests/test_run_modes.py
    # and tests/test_digests.py).
    assert untested <= {
        "CF201", "CF210", "CF218", "CF222", "CF224", "CF225", "CF226", "CF227", "CF228",
        "CF229"
    }, untested  # fmt: skip


def test_duplicate_ids_across_files(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": GOOD, "sub/b.yml": GOOD})
    result = cli("lint", "rules")
    assert result.code == 1
    assert (
        "rules/sub/b.yml:1:5: CF201 good: duplicate workflow id 'good' (also at rules/a.yaml:1:5)"
        in result.out
    )


def test_multi_document_files_and_test_files(cli: Cli, rules_dir: Rules) -> None:
    second = GOOD.replace("id: good", "id: second")
    rules_dir({"a.yaml": GOOD + "---\n" + second, "a.test.yaml": "not: a workflow\n"})
    result = cli("lint", "rules")
    assert result.code == 0, result.out
    assert "1 file, 2 workflows" in result.out


def test_strict_fails_on_warnings(cli: Cli, rules_dir: Rules) -> None:
    text = GOOD.replace("on: updated, fields: [stage]", "on: created")
    assert lint(cli, rules_dir, text).code == 0
    assert cli("lint", "--strict", "rules").code == 1


def test_json_format(cli: Cli, rules_dir: Rules) -> None:
    result = lint(cli, rules_dir, GOOD.replace("entity: deal", "entity: dael"), "--format", "json")
    data = json.loads(result.out)
    assert data["errors"] >= 1
    finding = data["findings"][0]
    assert finding == {
        "file": "rules/w.yaml",
        "line": 2,
        "column": 9,
        "code": "CF202",
        "severity": "error",
        "workflow": "good",
        "message": "unknown entity 'dael' (did you mean 'deal'?)",
    }


def test_github_format(cli: Cli, rules_dir: Rules) -> None:
    result = lint(cli, rules_dir, GOOD.replace("entity: deal", "entity: dael"), "-f", "github")
    assert result.out.splitlines()[0] == (
        "::error file=rules/w.yaml,line=2,col=9,title=CF202::CF202 good: unknown entity 'dael' "
        "(did you mean 'deal'?)"
    )


def test_usage_errors_exit_2(cli: Cli) -> None:
    missing = cli("lint", "nowhere")
    assert missing.code == 2
    assert missing.err.strip() == "crmflow: nowhere: no such file or folder"
    assert cli("lint", "--format", "xml").code == 2


def test_the_project_examples_are_clean(cli: Cli) -> None:
    from tests.conftest import ROOT

    result = cli("lint", "--strict", str(ROOT / "rules"))
    assert result.code == 0, result.out


def test_config_entities_extend_the_model(cli: Cli, rules_dir: Rules, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text(
        "entities:\n  deal:\n    fields: {margin: number}\n", encoding="utf-8"
    )
    text = GOOD.replace("stage: {changed_to: won}", "margin: {gt: 5}")
    assert lint(cli, rules_dir, text).code == 0


def test_an_entity_name_that_is_not_an_identifier_is_refused(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    """Entity names reach SQL (triggers mode names them in DDL): an identifier only."""
    (tmp_path / "crmflow.yaml").write_text(
        'entities:\n  "x\'); DELETE FROM users; --":\n    table: deals\n', encoding="utf-8"
    )
    result = lint(cli, rules_dir, GOOD)
    assert result.code == 2 and result.out == ""
    assert len(result.err.splitlines()) == 1 and "crmflow.yaml:2:" in result.err, result.err


def test_bad_time_zone_in_config(cli: Cli, rules_dir: Rules, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text("timezone: Mars/Base\n", encoding="utf-8")
    result = lint(cli, rules_dir, GOOD)
    assert result.code == 2
    assert result.err.strip() == "crmflow: crmflow.yaml:1:11: CF210 unknown time zone 'Mars/Base'"


def test_static_loops_are_warned_about(cli: Cli, rules_dir: Rules) -> None:
    rules_dir(
        {
            "a.yaml": "id: ping\nentity: deal\ntrigger: {on: updated, fields: [amount]}\n"
            "actions: [{update: {target: company, values: {industry: x}}}]\n",
            "b.yaml": "id: pong\nentity: company\ntrigger: {on: updated, fields: [industry]}\n"
            "actions: [{update: {target: deals, values: {amount: 1}}}]\n",
            "c.yaml": "id: self\nentity: task\ntrigger: {on: updated}\n"
            "actions: [{update: {values: {status: open}}}]\n",
            "d.yaml": "id: fine\nentity: task\ntrigger: {on: updated, fields: [logged_hours]}\n"
            "actions: [{update: {values: {status: to_deliver}}}]\n",
        }
    )
    result = cli("lint", "rules")
    assert result.code == 0
    lines = [line for line in result.out.splitlines() if "CF218" in line]
    assert lines == [
        "rules/a.yaml:3:1: CF218 warning: ping: possible loop: ping -> pong -> ping (each "
        "updates what the other triggers on; the daemon stops such chains at chain_depth)",
        "rules/b.yaml:3:1: CF218 warning: pong: possible loop: pong -> ping -> pong (each "
        "updates what the other triggers on; the daemon stops such chains at chain_depth)",
        "rules/c.yaml:3:1: CF218 warning: self: possible loop: self -> self (each updates what "
        "the other triggers on; the daemon stops such chains at chain_depth)",
    ]
    assert cli("lint", "--strict", "rules").code == 1
