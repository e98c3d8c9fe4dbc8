"""The commands through the installed entry point: exact outputs and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests import spec_example
from tests.conftest import ROOT, Result, crmflow_bin

Cli = Callable[..., Result]
Rules = Callable[..., Path]

BIG = spec_example.BIG_DEAL
WON = spec_example.WON
EVENT = json.dumps(spec_example.EVENT)


def test_eval_json_is_the_spec_plan(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG, "b.yaml": WON})
    result = cli("eval", "--dry-run", "--format", "json", stdin=EVENT)
    assert result.code == 0, result.err
    assert result.err == ""
    assert json.loads(result.out) == spec_example.PLAN


def test_ndjson_in_ndjson_out_in_order_with_bad_lines(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG})
    lines = [
        '{"entity": "deal", "event": "created", "record": {"id": 1, "amount": 5}}',
        "this is not json",
        '{"entity": "planet", "event": "created", "record": {"id": 2}}',
        '{"entity": "deal", "event": "created", "record": {"id": 3, "amount": 200000, '
        '"probability": 99}}',
    ]
    result = cli(
        "eval",
        "--dry-run",
        "-f",
        "json",
        "--now",
        "2026-11-22T10:00:00Z",
        stdin="\n".join(lines) + "\n",
    )
    assert result.code == 2
    plans = result.json_lines()
    assert [p["event"]["id"] for p in plans] == [1, 3]
    assert plans[1]["rules"][0]["actions"][0]["due"] == "2026-11-22T10:00:00Z"
    errors = result.err.splitlines()
    assert errors[0].startswith("crmflow: line 2: invalid JSON")
    assert errors[1] == "crmflow: line 3: entity: unknown entity 'planet'"
    assert "Traceback" not in result.err


def test_a_pretty_printed_event(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG})
    pretty = json.dumps(json.loads(EVENT), indent=2)
    result = cli("eval", "--dry-run", "--format", "json", stdin=pretty)
    assert result.code == 0
    assert len(result.json_lines()) == 1


def test_text_output_for_people(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG, "b.yaml": WON})
    result = cli("eval", "--dry-run", stdin=EVENT)
    assert result.code == 0
    assert result.out.splitlines()[:4] == [
        "deal #42 updated  at 2026-11-22T10:00:00Z  (line 1)",
        "  ✓ big-deal-alert",
        "    notify due 2026-11-22T10:00:00Z",
        '      to: ["role:management"]',
    ]
    assert "  ✗ deal-won-webhook: stage changed_to won: was negotiation, unchanged" in result.out


def test_text_output_shows_control_sequences_from_crm_data_instead_of_obeying_them(
    cli: Cli, rules_dir: Rules
) -> None:
    rules_dir(
        {
            "a.yaml": "id: w\nentity: deal\ntrigger: {on: created}\n"
            "actions: [{warn: {message: 'hi {{ deal.name }}'}}]\n"
        }
    )
    event = json.dumps(
        {
            "entity": "deal",
            "event": "created",
            "record": {"id": "7\u001b[2J", "name": "\u001b[31mred\u001b]0;title\u0007\u202eevil"},
        }
    )
    result = cli("eval", "--dry-run", stdin=event)
    assert result.code == 0, result.err
    assert not any(c in result.out for c in "\x1b\x07\u202e")
    assert "\\x1b[31mred" in result.out and "\\u202eevil" in result.out


def test_explain_shows_every_clause(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG})
    out = cli("eval", "--dry-run", "--explain", stdin=EVENT).out
    assert "✓ amount gt 100000: was 250000" in out
    assert "✓ probability gte 80: was 90" in out
    data = cli("eval", "--dry-run", "--explain", "-f", "json", stdin=EVENT).json_lines()[0]
    assert data["rules"][0]["explain"][1] == {
        "depth": 1,
        "ok": True,
        "clause": "amount gt 100000: was 250000",
    }


def test_now_and_seed_make_results_reproducible(cli: Cli, rules_dir: Rules) -> None:
    rules_dir(
        {
            "a.yaml": "id: c\nentity: lead\ntrigger: {on: created}\nactions:\n"
            "  - {id: g, generate_code: {length: 12}}\n"
            "  - warn: '{{ steps.g.code }} {{ now }}'\n"
        }
    )
    event = '{"entity": "lead", "event": "created", "record": {"id": 1}}'
    args = ("eval", "--dry-run", "-f", "json", "--now", "2026-01-02T03:04:05Z", "--seed", "3")
    first, second = cli(*args, stdin=event).out, cli(*args, stdin=event).out
    assert first == second
    message = json.loads(first)["rules"][0]["actions"][1]["params"]["message"]
    assert message.endswith(" 2026-01-02 03:04:05+00:00")
    other = cli(*args[:-1], "4", stdin=event).out
    assert other != first


def test_eval_without_dry_run_needs_a_crm(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG})
    result = cli("eval", stdin=EVENT)
    assert result.code == 2
    assert result.out == ""
    assert result.err == (
        "crmflow: no CRM is configured (no `crm` in crmflow.yaml), so only "
        "--dry-run is possible until one is\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("eval",),
        ("eval", "--dry-run"),
        ("tick",),
        ("run",),
        ("lint",),
        ("test",),
        ("status",),
        ("pending",),
        ("history",),
        ("schedule",),
        ("pause",),
        ("resume",),
    ],
    ids=" ".join,
)
def test_a_misspelt_sqlite_crm_is_a_configuration_error(
    cli: Cli, rules_dir: Rules, tmp_path: Path, args: tuple[str, ...]
) -> None:
    rules_dir({"a.yaml": BIG})
    (tmp_path / "crmflow.yaml").write_text("crm: sqlite:///crmm.db\nrules: rules/\n")
    result = cli(*args, stdin=EVENT)
    assert result.code == 2
    missing = tmp_path / "crmm.db"
    assert result.err == (
        f"crmflow: crm: cannot open sqlite:///{missing}: the file does not exist (a path in "
        "crm: is relative to crmflow.yaml; `crmflow init` makes a demo CRM)\n"
    )
    # Nothing was created: no empty CRM, no state database beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crmflow.yaml", "rules"]


@pytest.mark.parametrize("args", [("eval",), ("tick",), ("run",)], ids=" ".join)
@pytest.mark.parametrize(
    "section",
    [
        "webhooks: {allow: ['https://x.example/*'], secret_env: CRMFLOW_TEST_UNSET}",
        "email: {transport: smtp, host: 127.0.0.1, username: u, password_env: CRMFLOW_TEST_UNSET}",
    ],
    ids=["webhooks.secret_env", "email.password_env"],
)
def test_a_named_secret_that_is_not_set_stops_every_acting_command(
    cli: Cli, rules_dir: Rules, tmp_path: Path, args: tuple[str, ...], section: str
) -> None:
    from crmflow.crm.demo import create_demo_crm

    rules_dir({"a.yaml": BIG})
    create_demo_crm(tmp_path / "crm.db")
    (tmp_path / "crmflow.yaml").write_text(f"crm: sqlite:///crm.db\nrules: rules/\n{section}\n")
    key = "webhooks.secret_env" if "webhooks" in section else "email.password_env"
    result = cli(*args, stdin=EVENT)
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"crmflow: {key}: the environment variable CRMFLOW_TEST_UNSET is not set (or empty); "
        "set it, or remove the key\n"
    )
    # A dry run sends nothing, so it needs no secret.
    assert cli("eval", "--dry-run", stdin=EVENT).code == 0


def test_an_invalid_workflow_stops_eval_with_its_position(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG.replace("gte: 80", "gte: [80]")})
    result = cli("eval", "--dry-run", stdin=EVENT)
    assert result.code == 2
    assert result.err.startswith(
        "crmflow: rules/a.yaml:6:24: CF103 big-deal-alert: conditions[1].probability.gte:"
    )
    assert len(result.err.splitlines()) == 1


def test_invalid_yaml_stops_eval(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": "id: a\nentity: [\n"})
    result = cli("eval", "--dry-run", stdin=EVENT)
    assert result.code == 2
    assert result.err.startswith("crmflow: rules/a.yaml:3:1: CF001 invalid YAML")


def test_bad_options_exit_2(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG})
    result = cli("eval", "--dry-run", "--now", "soon", stdin=EVENT)
    assert result.code == 2
    assert result.err == "crmflow: --now: not an ISO date or date-time: 'soon'\n"
    assert cli("eval", "--dry-run", "--rules", "missing", stdin=EVENT).code == 2


def test_config_file_rules_and_timezone(cli: Cli, rules_dir: Rules, tmp_path: Path) -> None:
    folder = rules_dir(
        {"a.yaml": "id: d\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x, delay: 1d}]\n"}
    )
    folder.rename(tmp_path / "workflows")
    (tmp_path / "crmflow.yaml").write_text("rules: workflows/\ntimezone: Europe/Berlin\n")
    event = (
        '{"entity": "deal", "event": "created", "record": {"id": 1}, "at": "2026-03-28T12:00:00Z"}'
    )
    plan = cli("eval", "--dry-run", "-f", "json", stdin=event).json_lines()[0]
    assert plan["rules"][0]["actions"][0]["due"] == "2026-03-29T11:00:00Z"


def test_crmflow_test_passes_on_the_examples(cli: Cli) -> None:
    result = cli("test", str(ROOT / "rules"))
    assert result.code == 0, result.out
    last = result.out.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 32


TEST_FILE = """\
cases:
  - name: big deal alerts
    event: {entity: deal, event: created, record: {id: 1, amount: 200000, probability: 90},
            at: "2026-11-22T10:00:00Z"}
    expect:
      rules:
        big-deal-alert:
          actions:
            - {type: notify, due: "2026-11-22T10:00:00Z", params: {to: ["role:management"]}}
  - name: wrong expectation
    now: "2026-11-22T10:00:00Z"
    event: {entity: deal, event: created, record: {id: 1, amount: 200000, probability: 90}}
    expect:
      matched: []
      rules:
        big-deal-alert:
          actions:
            - {type: notify, due: now+1d}
"""


def test_crmflow_test_reports_failures_with_a_diff_and_junit(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    rules_dir({"a.yaml": BIG, "a.test.yaml": TEST_FILE})
    result = cli("test", "rules", "--junit-xml", "out.xml")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == "rules/a.test.yaml::big deal alerts PASSED"
    assert lines[1] == "rules/a.test.yaml::wrong expectation FAILED"
    assert "  matched: expected [], got ['big-deal-alert']" in lines
    assert (
        "  rules.big-deal-alert.actions[0].due: expected '2026-11-23T10:00:00Z', "
        "got '2026-11-22T10:00:00Z'"
    ) in lines
    assert any(
        line.strip().startswith("-") and '"due": "2026-11-23T10:00:00Z"' in line for line in lines
    )
    assert lines[-1] == "1 passed, 1 failed"
    suite = ElementTree.parse(tmp_path / "out.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert suite.findall("testcase")[1].find("failure") is not None


DELAYED = "id: d\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x, delay: 1d}]\n"
# One day after 12:00 UTC on the Saturday before Europe's spring DST change (29 March 2026):
# 11:00 UTC in Berlin, where the day has 23 hours; 12:00 UTC where there is no change.
ZONED_TESTS = """\
timezone: Europe/Berlin
now: "2026-03-28T12:00:00Z"
cases:
  - name: the file's zone
    event: {entity: deal, event: created, record: {id: 1}}
    expect: {rules: {d: {actions: [{due: "2026-03-29T11:00:00Z"}]}}}
  - name: a case's own zone
    timezone: UTC
    event: {entity: deal, event: created, record: {id: 1}}
    expect: {rules: {d: {actions: [{due: "2026-03-29T12:00:00Z"}]}}}
  - name: a case's own now
    now: "2026-03-29T12:00:00Z"
    event: {entity: deal, event: created, record: {id: 1}}
    expect: {rules: {d: {actions: [{due: "2026-03-30T12:00:00Z"}]}}}
"""


def test_a_test_file_sets_its_zone_and_now_and_a_case_overrides_them(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    rules_dir({"d.yaml": DELAYED, "d.test.yaml": ZONED_TESTS})
    # A crmflow.yaml in another zone changes nothing: the file says where it runs.
    (tmp_path / "crmflow.yaml").write_text("rules: rules/\ntimezone: America/New_York\n")
    result = cli("test", "rules")
    assert result.code == 0, result.out
    assert result.out.strip().splitlines()[-1] == "3 passed, 0 failed"


def test_an_unknown_zone_in_a_test_file_fails_its_case(cli: Cli, rules_dir: Rules) -> None:
    broken = ZONED_TESTS.replace("    timezone: UTC", "    timezone: Mars/Olympus")
    rules_dir({"d.yaml": DELAYED, "d.test.yaml": broken})
    result = cli("test", "rules")
    assert result.code == 1
    assert "bad test case: " in result.out and "unknown time zone 'Mars/Olympus'" in result.out
    assert result.out.strip().splitlines()[-1] == "2 passed, 1 failed"


def test_crmflow_test_rejects_an_invalid_test_file(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"a.yaml": BIG, "a.test.yaml": "cases:\n  - name: x\n    evnt: {}\n"})
    result = cli("test", "rules")
    assert result.code == 2
    assert result.err.startswith(
        "crmflow: rules/a.test.yaml:3:5: CF101 cases[0]: unknown key 'evnt' (did you mean 'event'?)"
    )


def test_help_teaches(cli: Cli) -> None:
    result = cli("eval", "--help")
    assert result.code == 0
    assert "--dry-run" in result.out and "NDJSON" in result.out
    assert cli("--help").code == 0
    assert cli().code in (0, 2)


def test_version(cli: Cli) -> None:
    from crmflow import __version__

    for args in (("--version",), ("-V",), ("version",)):
        result = cli(*args)
        assert (result.code, result.out, result.err) == (0, f"crmflow {__version__}\n", "")


def test_bash_completion_completes_commands_options_and_choices(cli: Cli, tmp_path: Path) -> None:
    import os
    import subprocess

    script = cli("--show-completion", "bash")
    assert script.code == 0
    assert "complete -o default -F _crmflow_completion crmflow" in script.out

    def complete(words: str) -> list[str]:
        # What bash's completion function asks the program, as the script above does.
        env = {
            **os.environ,
            "_CRMFLOW_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        proc = subprocess.run(
            [crmflow_bin()], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        return proc.stdout.split()

    assert complete("crmflow li") == ["lint"]
    assert complete("crmflow eval --dr") == ["--dry-run"]
    assert complete("crmflow schema ") == ["workflow", "config", "test"]


def test_the_license_is_the_one_pyproject_names() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_json_eval_loads_no_module_it_does_not_use(rules_dir: Rules, tmp_path: Path) -> None:
    import subprocess
    import sys

    rules_dir({"a.yaml": BIG})
    script = (
        "import sys\n"
        "sys.argv = ['crmflow', 'eval', '--dry-run', '--format', 'json']\n"
        "from crmflow.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('rich', 'requests', 'sqlalchemy', 'apscheduler', 'jsonschema')\n"
        "         if m in sys.modules]\n"
        "print('LOADED', heavy, file=sys.stderr)\n"
    )
    # Twice: the first run validates (jsonschema) and remembers; the second needs none of it.
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            input=EVENT,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "entities:\n  deal:\n    columns: {updated_at: changed_on}\n",
            "crmflow: entities.deal: the table deals has no column 'changed_on' for updated_at "
            "(map it under columns:); polling needs it\n",
        ),
        (
            "state: sqlite:////proc/crmflow/state.db\n",
            "crmflow: state: cannot create the folder /proc/crmflow: No such file or directory\n",
        ),
    ],
    ids=["unknown updated_at column", "state folder that cannot be made"],
)
def test_configuration_mistakes_met_at_start_are_one_line(
    cli: Cli, rules_dir: Rules, tmp_path: Path, extra: str, message: str
) -> None:
    from crmflow.crm.demo import create_demo_crm

    rules_dir({"a.yaml": BIG})
    create_demo_crm(tmp_path / "crm.db")
    (tmp_path / "crmflow.yaml").write_text(f"crm: sqlite:///crm.db\nrules: rules/\n{extra}")
    result = cli("tick")
    # The daemon's notes before it (log lines on stderr), then the one line of the mistake.
    assert (result.code, result.err.splitlines()[-1] + "\n") == (2, message), result.err
    assert sum(line.startswith("crmflow: ") for line in result.err.splitlines()) == 1


def test_durations_in_the_configuration_may_be_bare_seconds(tmp_path: Path) -> None:
    from crmflow.config import load_config

    (tmp_path / "crmflow.yaml").write_text(
        "poll_interval: 2\noverlap: 0.5\nretry: {base_delay: 1, max_age: 3600}\n"
    )
    config = load_config(tmp_path / "crmflow.yaml")
    assert config.daemon.poll_interval.seconds == 2
    assert config.daemon.overlap.seconds == 0.5
    assert (config.retry.base_delay.seconds, config.retry.max_age.seconds) == (1, 3600)


def test_a_negative_duration_in_the_configuration_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text("poll_interval: -2\n")
    result = cli("lint")
    assert result.code == 2 and "crmflow.yaml:1:16" in result.err, result.err


def test_entities_shows_the_model_in_use(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text(
        "entities:\n  deal:\n    fields: {margin: number}\n    columns: {stage: stage_name}\n"
    )
    text = cli("entities", "deal")
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0] == "deal  (table deals)"
    assert "margin number" in lines[1] and "stage string [stage_name]" in lines[1]
    assert "  relation   company -> company (our company_id)" in lines
    assert (
        "  pipeline   stage: qualification -> proposal -> negotiation -> won; closed: lost" in lines
    )
    every = json.loads(cli("entities", "--format", "json").out)
    assert [e["entity"] for e in every] == sorted(e["entity"] for e in every)
    deal = next(e for e in every if e["entity"] == "deal")
    assert deal["fields"]["margin"] == "number" and deal["columns"] == {"stage": "stage_name"}
    assert deal["relations"]["quotes"] == {"entity": "quote", "foreign_key": "deal_id"}
    wrong = cli("entities", "dael")
    assert wrong.code == 2 and "did you mean 'deal'?" in wrong.err


HELPED = [
    "lint",
    "eval",
    "test",
    "schema",
    "entities",
    "profile",
    "init",
    "run",
    "tick",
    "status",
    "pending",
    "pending list",
    "pending show",
    "pending cancel",
    "pending retry",
    "history",
    "schedule",
    "pause",
    "resume",
    "version",
]


def test_every_command_is_registered_in_the_help_list() -> None:
    import typer.main

    from crmflow.cli import app

    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert names == {name.split()[0] for name in HELPED}


@pytest.mark.parametrize("command", HELPED)
def test_every_help_teaches_with_an_example_and_fits_the_terminal(command: str) -> None:
    import os
    import subprocess

    result = subprocess.run(
        [crmflow_bin(), *command.split(), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "TERM": "dumb"},
        check=True,
    )
    lines = result.stdout.splitlines()
    assert any("Example" in line for line in lines), result.stdout
    assert max(len(line.rstrip()) for line in lines) <= 100, result.stdout


def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if hasattr(command, "commands"):  # a group of subcommands
            yield from _commands(command, f"{prefix}{name} ")


def test_every_option_and_argument_says_what_it_is_for() -> None:
    import typer.main

    from crmflow.cli import app

    silent = []
    checked = 0
    for name, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if param.name == "help":
                continue
            checked += 1
            # typer's arguments keep their help as options do, in `help`
            text = getattr(param, "help", None)
            if not (text or "").strip():
                silent.append(f"{name} {param.opts[0] if param.opts else param.name}")
    assert silent == []
    assert checked > 50  # the walk reached the subcommands' options too
