"""One run names every mistake: schema and semantic findings of a file together, without
findings that only repeat a refused part, and every mistake of crmflow.yaml at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import Result

Cli = Callable[..., Result]
Rules = Callable[..., Path]

MIXED = """\
id: big
entity: deal
trigger: {on: updated}
conditions:
  amount: {gt: "100"}
  probabilty: {gte: 5}
actions:
  - notify: {to: [ownr], subject: "Hi {{ deal.nam }}", colour: red}
  - webhook: {url: "https://x.example/h", method: PUTT}
  - update: {values: {amunt: 5}}
  - notify: {to: [ownr], subject: "Hi {{ deal.nme }}"}
"""


def finding_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.err, result.err
    return [
        line.split(": ", 1)[0].removeprefix("rules/w.yaml:") + " " + line.split()[1]
        for line in result.out.splitlines()
        if line.startswith("rules/")
    ]


def test_schema_and_semantic_findings_come_in_one_run(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"w.yaml": MIXED})
    result = cli("lint", "rules")
    assert result.code == 1
    assert finding_lines(result) == [
        "5:16 CF220",  # operand type, beside the schema errors below
        "6:3 CF203",  # field typo
        "8:19 CF221",  # actions[0]: its recipient, though one of its keys is refused
        "8:35 CF203",  # and its template
        "8:56 CF101",  # schema: the unknown key of actions[0]
        "9:51 CF104",  # schema: the method of actions[1]
        "10:23 CF203",  # a field typo in an action the schema accepts
        "11:19 CF221",  # recipient
        "11:35 CF203",  # template field
    ]
    # Nothing is said of the part the schema refused itself: the unknown key and the
    # method are named once, by the schema.
    assert result.out.count("colour") == 1 and result.out.count("PUTT") == 1


def test_a_document_the_schema_refuses_at_its_root_is_still_checked(
    cli: Cli, rules_dir: Rules
) -> None:
    # `trigger` missing and an unknown top-level key: the conditions are still checked,
    # the checks that need the trigger are left out, and nothing crashes.
    rules_dir(
        {
            "w.yaml": "id: w\nentity: deal\ncolour: red\nconditions: {amunt: {gt: 5}}\n"
            "actions: [{warn: x}]\n"
        }
    )
    result = cli("lint", "rules")
    assert result.code == 1
    codes = [line.split()[1] for line in result.out.splitlines() if line.startswith("rules/")]
    assert "CF102" in codes or "CF101" in codes
    assert "CF203" in codes, result.out


def test_a_refused_entity_leaves_field_checks_out(cli: Cli, rules_dir: Rules) -> None:
    rules_dir(
        {
            "w.yaml": "id: w\nentity: [deal]\ntrigger: {on: updated}\n"
            "conditions: {amunt: {gt: 5}}\nactions: [{warn: x}]\n"
        }
    )
    result = cli("lint", "rules")
    assert result.code == 1
    lines = [line for line in result.out.splitlines() if line.startswith("rules/")]
    assert len(lines) == 1 and "entity" in lines[0], lines


CONFIG = """\
crm: 5
state: [1]
timezone: Europe/Berlinn
poll_interval: 2x
retry: {base_delay: soon}
email: {transport: smtp, host: "${CRMFLOW_TEST_UNSET_HOST}"}
webhooks: {allow: ["https://x.example/*"], timeout: 3q}
"""


def test_every_mistake_of_the_configuration_comes_in_one_run(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    rules_dir({"w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n"})
    (tmp_path / "crmflow.yaml").write_text(CONFIG, encoding="utf-8")
    result = cli("lint", "rules")
    assert result.code == 2
    lines = result.err.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "crmflow.yaml:1:6",
        "crmflow.yaml:2:8",
        "crmflow.yaml:3:11",
        "crmflow.yaml:4:16",
        "crmflow.yaml:5:21",
        "crmflow.yaml:6:32",
        "crmflow.yaml:7:53",
    ], lines
    assert all(line.startswith("crmflow: crmflow.yaml:") for line in lines)
    assert "CRMFLOW_TEST_UNSET_HOST is not set" in lines[5]
    assert "unknown time zone 'Europe/Berlinn'" in lines[2]


def test_a_duration_the_schema_cannot_judge_is_one_of_the_collected_mistakes(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    rules_dir({"w.yaml": "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n"})
    (tmp_path / "crmflow.yaml").write_text(
        "timezone: Mars/Base\npoll_interval: ${CRMFLOW_TEST_UNSET_POLL}\n", encoding="utf-8"
    )
    result = cli("lint", "rules")
    assert result.code == 2
    assert len(result.err.splitlines()) == 2, result.err


def test_a_refused_clause_or_key_hides_nothing_beside_it(cli: Cli, rules_dir: Rules) -> None:
    rules_dir(
        {
            "w.yaml": """\
id: w
entity: deal
trigger: {on: updated}
conditions:
  probability: {between: 3}
  amount: {gt: "lots"}
  nosuchfield: 5
actions:
  - notify: {to: [ownr], subject: "{{ deal.nme }}", urgent: true}
"""
        }
    )
    result = cli("lint", "rules")
    assert finding_lines(result) == [
        "5:17 CF101",  # the unknown operator
        "6:16 CF220",  # the clause beside it
        "7:3 CF203",
        "9:19 CF221",  # the action whose one key is unknown
        "9:35 CF203",
        "9:53 CF101",  # the unknown key
    ]
