"""SPEC §9: `matches` runs in linear time, and lint rejects patterns the engine cannot run.

Timings are ratios against a trivial pattern on the same input in the same process, never
absolute wall-clock: a slow machine slows both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event, parse_event
from crmflow.rules.ruleset import load_ruleset
from tests.conftest import Result

Cli = Callable[..., Result]
Rules = Callable[..., Path]

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TRIVIAL = "^a"
CATASTROPHIC = [r"(a+)+$", r"(a|aa)+$", r"(.*a){20}"]


def workflow(wid: str, pattern: str) -> str:
    quoted = pattern.replace("'", "''")
    return (
        f"id: {wid}\nentity: deal\ntrigger: {{on: created}}\n"
        f"conditions: {{name: {{matches: '{quoted}'}}}}\nactions: [{{warn: x}}]\n"
    )


def evaluators(rules_dir: Rules, patterns: list[str]) -> dict[str, Evaluator]:
    """One Evaluator per pattern, each over a single workflow, loaded as the CLI loads."""
    config = Config()
    out = {}
    for i, pattern in enumerate(patterns):
        folder = rules_dir({f"p{i}/w.yaml": workflow(f"p{i}", pattern)}) / f"p{i}"
        out[pattern] = Evaluator(load_ruleset([folder], config), config.timezone)
    return out


def event_with(name: str) -> Event:
    raw = {"entity": "deal", "event": "created", "record": {"id": 1, "name": name}}
    return parse_event(raw, Config().model)


def cost(evaluator: Evaluator, event: Event, rounds: int = 5) -> tuple[float, bool]:
    """The fastest of a few evaluations (the least disturbed), and whether the rule matched."""
    best = float("inf")
    matched = False
    for _ in range(rounds):
        start = time.perf_counter()
        plan = evaluator.evaluate(event, NOW)
        best = min(best, time.perf_counter() - start)
        matched = plan.rules[0].matched
    return best, matched


@pytest.mark.parametrize("tail", ["!", "a"])
def test_catastrophic_patterns_cost_what_a_trivial_one_costs(rules_dir: Rules, tail: str) -> None:
    built = evaluators(rules_dir, [TRIVIAL, *CATASTROPHIC])
    # A short input first: a backtracking engine is already thousands of times slower at
    # 20 characters, so a regression fails here in a second instead of hanging at 10,000.
    for length in (20, 10_000):
        event = event_with("a" * length + tail)
        simple, _ = cost(built[TRIVIAL], event)
        for pattern in CATASTROPHIC:
            spent, matched = cost(built[pattern], event)
            assert spent < 50 * simple, (pattern, length, spent, simple)
            # The answers stay those of a regex search, whatever the engine.
            expected = tail == "a" or pattern == r"(.*a){20}"  # 20 a's are enough for it
            assert matched is expected, (pattern, length, tail)


@pytest.mark.parametrize(
    ("pattern", "column", "reason"),
    [
        (r"(a)\1", 30, r"invalid escape sequence: \1"),
        (r"^(?=.*@)", 30, "invalid perl operator: (?="),
        (r"(?<!x)y", 30, "invalid perl operator: (?<!"),
        (r"a++", 30, "bad repetition operator: ++"),
    ],
)
def test_patterns_the_engine_cannot_run_are_lint_errors_with_their_line(
    cli: Cli, rules_dir: Rules, pattern: str, column: int, reason: str
) -> None:
    rules_dir({"w.yaml": workflow("w", pattern)})
    result = cli("lint", "rules")
    assert result.code == 1, result.out + result.err
    expected = (
        f"rules/w.yaml:4:{column}: CF213 w: pattern not supported by the regex engine: "
        f"{reason} (RE2 syntax: no backreferences or lookaround)"
    )
    assert expected in result.out.splitlines(), result.out
    assert "Traceback" not in result.err
    assert "re2.cc" not in result.err  # RE2's own logging stays quiet


def test_a_pattern_in_a_nested_block_is_reported_where_it_is(cli: Cli, rules_dir: Rules) -> None:
    text = (
        "id: w\nentity: deal\ntrigger: {on: created}\nconditions:\n  any:\n"
        "    - name: {matches: '^x'}\n    - name: {matches: '(\\w+)\\s\\1'}\n"
        "actions: [{warn: x}]\n"
    )
    rules_dir({"w.yaml": text})
    result = cli("lint", "rules")
    assert result.code == 1
    lines = [line for line in result.out.splitlines() if "CF213" in line]
    assert lines == [
        "rules/w.yaml:7:23: CF213 w: pattern not supported by the regex engine: "
        r"invalid escape sequence: \1 (RE2 syntax: no backreferences or lookaround)"
    ], result.out


def test_a_syntax_error_is_still_an_invalid_regular_expression(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"w.yaml": workflow("w", "(unclosed")})
    result = cli("lint", "rules")
    assert result.code == 1
    assert "rules/w.yaml:4:30: CF213 w: invalid regular expression '(unclosed'" in result.out


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"\pL{1000}", "is too large for the regex engine (its program needs more than 8 MiB)"),
        ("x{1000}" * 1000, "is too large for the regex engine"),
        ("(((a{100}){100}){100})", "invalid repetition size"),
        ("a{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_a_giant_pattern_is_an_error_not_a_memory_hog(
    cli: Cli, rules_dir: Rules, pattern: str, reason: str
) -> None:
    rules_dir({"w.yaml": workflow("w", pattern)})
    result = cli("lint", "rules")
    assert result.code == 1, result.out
    (line,) = [line for line in result.out.splitlines() if "CF213" in line]
    assert line.startswith("rules/w.yaml:4:30: CF213 w: "), line
    assert reason in line, line
    assert len(line) < 300, line  # the pattern is shortened, not echoed whole


def test_eval_refuses_an_unsupported_pattern_before_evaluating(cli: Cli, rules_dir: Rules) -> None:
    rules_dir({"w.yaml": workflow("w", r"(a)\1")})
    event = '{"entity": "deal", "event": "created", "record": {"id": 1, "name": "aa"}}'
    result = cli("eval", "--dry-run", "--rules", "rules", stdin=event)
    assert result.code != 0
    assert "CF213" in result.out + result.err
    assert "Traceback" not in result.err
