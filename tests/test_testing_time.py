"""`crmflow test` cases that change records and move their clock: what the daemon does at
due time, through the real command, with the exact lines a failure prints.

Every case sets its own `now` and `timezone`: these tests mean the same on any day, in
any zone, and never wait.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.daemonkit import Rig, make_rig

Cli = Callable[..., Result]
Rules = Callable[..., Path]

FOLLOW_UP = """\
id: follow-up
entity: quote
trigger: {on: created}
conditions: {status: {not_in: [accepted, closed]}}
actions:
  - create:
      entity: task
      values: {title: "Follow up {{ quote.number }}", status: open, due_date: "{{ now | date }}"}
    delay: 14d
"""

NUDGE = """\
id: nudge
entity: deal
trigger: {on: created}
actions:
  - warn: hello
  - wait: {for: 3d, until: {last_activity_at: {changed: true}}, on_met: stop}
  - create: {entity: task, values: {title: "Call about {{ deal.name }}", status: open}}
"""

MORNING = """\
id: morning
entity: lead
trigger: {schedule: "0 8 * * 1-5"}
cooldown: 2d
conditions: {status: new}
actions:
  - create: {entity: task, values: {title: "Call {{ lead.name }}", due_date: "{{ now | date }}"}}
"""

HEAD = """\
timezone: Europe/Berlin
now: "2026-11-23T09:00:00Z"   # a Monday; 10:00 in Berlin
cases:
"""


def case(text: str) -> str:
    return HEAD + textwrap.indent(textwrap.dedent(text), "  ")


def run(cli: Cli, rules_dir: Rules, workflow: str, tests: str) -> Result:
    rules_dir({"w.yaml": workflow, "w.test.yaml": tests})
    return cli("test", "rules")


def failure_lines(result: Result) -> list[str]:
    """The lines under the failed cases' headings: the failures, then the diff."""
    return [line for line in result.out.splitlines() if line.startswith("  ")]


QUOTE = "{entity: quote, event: created, record: {id: 7, number: Q-7, status: sent}}"


def test_a_delayed_action_fires_at_its_due_time_with_params_rendered_then(
    cli: Cli, rules_dir: Rules
) -> None:
    tests = case(
        f"""
        - name: two weeks later
          events:
            - event: {QUOTE}
              expect:
                rules: {{follow-up: {{actions: [{{type: create, due: now+14d}}]}}}}
            - advance: 13d
              expect: {{due: []}}
            - advance: 1d
              expect:
                due:
                  - {{rule: follow-up, type: create, record: 7, at: now+1d, outcome: fired,
                     params: {{values: {{title: Follow up Q-7, due_date: "2026-12-07"}}}}}}
        """
    )
    result = run(cli, rules_dir, FOLLOW_UP, tests)
    assert result.code == 0, result.out
    assert result.out.splitlines()[-1] == "1 passed, 0 failed"


def test_a_change_meanwhile_cancels_it_with_the_daemons_reason(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        f"""
        - name: accepted meanwhile
          events:
            - event: {QUOTE}
            - to: "2026-11-30T12:00:00Z"
            - change: {{status: accepted}}
              expect:
                rules: {{follow-up: {{matched: false, reason: "not updated"}}}}
                due: []
            - advance: 14d
              expect:
                due:
                  - rule: follow-up
                    type: create
                    record: 7
                    at: "2026-12-07T09:00:00Z"
                    outcome: cancelled
                    reason: 'conditions no longer hold: status not_in ["accepted", "closed"]: was accepted'
        """
    )
    result = run(cli, rules_dir, FOLLOW_UP, tests)
    assert result.code == 0, result.out


def test_a_wrong_outcome_fails_with_the_reason_and_a_diff(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        f"""
        - name: expects the wrong outcome
          events:
            - event: {QUOTE}
            - change: {{status: closed}}
            - advance: 14d
              expect:
                due:
                  - {{rule: follow-up, outcome: fired, params: {{values: {{title: Follow up Q-7}}}}}}
        """
    )
    result = run(cli, rules_dir, FOLLOW_UP, tests)
    assert result.code == 1
    assert result.out.splitlines()[0] == "rules/w.test.yaml::expects the wrong outcome FAILED"
    lines = failure_lines(result)
    assert lines[:2] == [
        "  events[2]: due[0].outcome: expected 'fired', got 'cancelled' "
        '(conditions no longer hold: status not_in ["accepted", "closed"]: was closed)',
        "  events[2]: due[0].params: none (cancelled, not fired)",
    ]
    assert '  -        "outcome": "fired",' in lines
    assert '  +        "outcome": "cancelled"' in lines
    assert result.out.splitlines()[-1] == "0 passed, 1 failed"


def test_a_wrong_count_fails_with_what_did_fall_due(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        f"""
        - name: expects nothing
          events:
            - event: {QUOTE}
            - advance: 2w
              expect: {{due: []}}
        - name: expects the wrong params
          events:
            - event: {QUOTE}
            - advance: 2w
              expect:
                due: [{{outcome: fired, params: {{values: {{due_date: "2026-11-23"}}}}}}]
        """
    )
    result = run(cli, rules_dir, FOLLOW_UP, tests)
    assert result.code == 1
    lines = failure_lines(result)
    assert "  events[1]: due: expected 0, got 1: ['follow-up create fired']" in lines
    assert (
        "  events[1]: due[0].params.values.due_date: expected '2026-11-23', got '2026-12-07'"
    ) in lines
    assert result.out.splitlines()[-1] == "0 passed, 2 failed"


DEAL = "{entity: deal, event: created, record: {id: 5, name: Quiet, last_activity_at: null}}"


def test_a_wait_times_out_and_the_actions_after_it_go_on(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        f"""
        - name: no activity
          events:
            - event: {DEAL}
            - advance: 3d
              expect:
                due:
                  - {{rule: nudge, type: wait, record: 5, at: now+3d, outcome: timed_out,
                     reason: "wait timed out: continue"}}
                  - {{rule: nudge, type: create, record: 5, at: now+3d, outcome: fired,
                     params: {{values: {{title: Call about Quiet}}}}}}
        """
    )
    result = run(cli, rules_dir, NUDGE, tests)
    assert result.code == 0, result.out


def test_a_change_that_makes_until_hold_ends_the_wait(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        f"""
        - name: an activity on the second day
          events:
            - event: {DEAL}
            - advance: 1d
            - change: {{last_activity_at: "2026-11-24T10:00:00Z"}}
              expect:
                due:
                  - {{rule: nudge, type: wait, record: 5, at: now, outcome: met}}
                  - {{rule: nudge, type: create, record: 5, outcome: cancelled,
                     reason: the wait until held and says stop}}
            - advance: 5d
              expect: {{due: []}}
        """
    )
    result = run(cli, rules_dir, NUDGE, tests)
    assert result.code == 0, result.out


def test_cron_occurrences_in_the_window_run_in_order(cli: Cli, rules_dir: Rules) -> None:
    tests = case(
        """
        - name: three weekday mornings, a cooldown of two days
          events:
            - event: {entity: lead, event: created, record: {id: 3, name: Ada, status: new}}
            - to: "2026-11-27T00:00:00Z"   # Tuesday, Wednesday and Thursday at 08:00
              expect:
                due:
                  - {rule: morning, type: schedule, outcome: ran, at: "2026-11-24T07:00:00Z",
                     reason: "run for 2026-11-24T07:00:00Z: fired for 1 record(s)"}
                  - {rule: morning, type: create, record: 3, outcome: fired,
                     params: {values: {due_date: "2026-11-24"}}}
                  - {rule: morning, type: schedule, outcome: ran, at: "2026-11-26T07:00:00Z"}
                  - {rule: morning, type: create, record: 3, outcome: fired,
                     params: {values: {due_date: "2026-11-26"}}}
        """
    )
    result = run(cli, rules_dir, MORNING, tests)
    assert result.code == 0, result.out


def test_time_steps_that_make_no_sense_are_one_line_errors(cli: Cli, rules_dir: Rules) -> None:
    backwards = case(
        f"""
        - name: backwards
          events:
            - event: {QUOTE}
            - to: "2026-11-01T00:00:00Z"
        """
    )
    result = run(cli, rules_dir, FOLLOW_UP, backwards)
    assert result.code == 1
    assert failure_lines(result) == [
        "  bad test case: rules/w.test.yaml:8:13: to: 2026-11-01T00:00:00Z is before the "
        "case's clock (2026-11-23T09:00:00Z); time only moves forward"
    ]

    nothing_to_change = case("- name: x\n  events:\n    - change: {status: closed}\n")
    result = run(cli, rules_dir, FOLLOW_UP, nothing_to_change)
    assert result.code == 2
    assert result.err == (
        "crmflow: rules/w.test.yaml:6:9: CF102 cases[0].events[0].change: no record to "
        "change yet (give an event first, or say which record with `of`)\n"
    )

    plan_of_no_event = case(
        "- name: x\n  events:\n    - advance: 1d\n      expect: {rules: {follow-up: true}}\n"
    )
    result = run(cli, rules_dir, FOLLOW_UP, plan_of_no_event)
    assert result.code == 2
    assert result.err == (
        "crmflow: rules/w.test.yaml:7:18: CF101 cases[0].events[0].expect: 'rules' needs an "
        "event; a step that moves the clock (advance) expects only 'due'\n"
    )


def test_a_window_with_too_much_falling_due_is_refused(cli: Cli, rules_dir: Rules) -> None:
    every_minute = MORNING.replace("0 8 * * 1-5", "* * * * *").replace("cooldown: 2d\n", "")
    tests = case(
        """
        - name: a year of minutes
          events:
            - event: {entity: lead, event: created, record: {id: 3, name: Ada, status: new}}
            - advance: 1y
        """
    )
    result = run(cli, rules_dir, every_minute, tests)
    assert result.code == 1
    [line] = failure_lines(result)
    assert line.startswith("  bad test case: rules/w.test.yaml:8:18: more than 1000 actions ")
    assert line.endswith("move the clock in smaller steps")


# -- the same scenario through the daemon and through `crmflow test` ---------------------


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path)
    yield rig
    rig.close()


def daemon_outcomes(rig: Rig, workflow: str) -> dict[tuple[str, str, str], str]:
    """(record, action type, outcome) -> detail of the daemon's history."""
    rows = rig.state(
        "SELECT record_id, action_type, outcome, detail FROM crmflow_history "
        f"WHERE workflow = '{workflow}' AND action_type IS NOT NULL ORDER BY id"
    )
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def test_the_daemon_and_crmflow_test_cancel_a_delayed_action_alike(rig: Rig, cli: Cli) -> None:
    rig.rules({"w.yaml": FOLLOW_UP})
    rig.start()
    rig.write(
        "INSERT INTO quotes (id, number, status, updated_at) VALUES "
        "(50, 'Q-50', 'sent', {stamp}), (51, 'Q-51', 'sent', {stamp})"
    )
    rig.tick(seconds=1)
    rig.clock.advance(days=7)
    rig.write("UPDATE quotes SET status = 'accepted', updated_at = {stamp} WHERE id = 51")
    rig.tick(seconds=1)
    rig.tick(days=7)
    daemon = daemon_outcomes(rig, "follow-up")
    assert ("50", "create", "done") in daemon
    cancelled = daemon[("51", "create", "cancelled")]

    tests = case(
        f"""
        - name: as the daemon did
          events:
            - event: {{entity: quote, event: created, record: {{id: 50, number: Q-50, status: sent}}}}
            - event: {{entity: quote, event: created, record: {{id: 51, number: Q-51, status: sent}}}}
            - advance: 7d
            - change: {{status: accepted}}
            - advance: 7d
              expect:
                due:
                  - {{rule: follow-up, type: create, record: 50, outcome: fired}}
                  - {{rule: follow-up, type: create, record: 51, outcome: cancelled,
                     reason: '{cancelled}'}}
        """
    )
    (rig.folder / "rules" / "w.test.yaml").write_text(tests, encoding="utf-8")
    result = cli("test", "rules")
    assert result.code == 0, result.out


def test_the_daemon_and_crmflow_test_end_waits_alike(rig: Rig, cli: Cli) -> None:
    rig.rules({"w.yaml": NUDGE})
    rig.start()
    rig.write(
        "INSERT INTO deals (id, name, updated_at) VALUES (300, 'Busy', {stamp}), "
        "(301, 'Quiet', {stamp})"
    )
    rig.tick(seconds=1)
    rig.clock.advance(days=1)
    rig.write(
        "INSERT INTO activities (kind, subject, related_entity, related_id, at) "
        "VALUES ('call', 'Called', 'deal', 300, {stamp})"
    )
    rig.write("UPDATE deals SET updated_at = {stamp} WHERE id = 300")
    rig.tick(seconds=1)
    rig.tick(days=3)
    daemon = daemon_outcomes(rig, "nudge")
    assert ("301", "create", "done") in daemon
    met, stopped = daemon[("300", "wait", "done")], daemon[("300", "create", "cancelled")]
    timed_out = daemon[("301", "wait", "done")]

    tests = case(
        f"""
        - name: as the daemon did
          events:
            - event: {{entity: deal, event: created, record: {{id: 300, name: Busy}}}}
            - event: {{entity: deal, event: created, record: {{id: 301, name: Quiet}}}}
            - advance: 1d
            - change: {{last_activity_at: "2026-11-24T09:00:00Z"}}
              of: {{entity: deal, id: 300}}
              expect:
                due:
                  - {{rule: nudge, type: wait, record: 300, outcome: met, reason: '{met}'}}
                  - {{rule: nudge, type: create, record: 300, outcome: cancelled,
                     reason: '{stopped}'}}
            - advance: 3d
              expect:
                due:
                  - {{rule: nudge, type: wait, record: 301, outcome: timed_out,
                     reason: '{timed_out}'}}
                  - {{rule: nudge, type: create, record: 301, outcome: fired}}
        """
    )
    (rig.folder / "rules" / "w.test.yaml").write_text(tests, encoding="utf-8")
    result = cli("test", "rules")
    assert result.code == 0, result.out
