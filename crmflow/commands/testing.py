"""`crmflow test`: workflow test cases (`*.test.yaml`) run against the evaluator.

A case gives an event (or a sequence of events), an optional `now`, and what the plan
must hold: which workflows match, their reasons, their actions' types, due times and
parameters (a subset match). Times are written absolutely or relative to the case's
now (`now+14d`), so delays are tested with a frozen clock.

A file may set `now` and `timezone` for all its cases, and a case may override either:
a test then means the same on any day and beside any crmflow.yaml (without either, a
case runs at the clock's now in the configured time zone).

A sequence may also change the record (`change:`) and move the case's clock (`advance:`,
`to:`); such a case is a dry rehearsal of the daemon (crmflow.daemon.rehearsal), and
`expect: {due: [...]}` says what the daemon did at due time in each step: delayed actions
fired or cancelled with its reason, waits met or timed out, cron occurrences run.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from functools import cache, partial
from pathlib import Path
from typing import IO, Any

from crmflow import durations
from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event, parse_event
from crmflow.errors import ConfigError, ConfigErrors, EventError, Location
from crmflow.rules.ruleset import RuleSet, compile_documents
from crmflow.rules.schema import TEST_SCHEMA
from crmflow.rules.yamlload import Document, load_file
from crmflow.timeutil import format_utc, parse_instant, zone
from crmflow.workdays import calendar_from, calendar_of, with_calendar

_TEST_SUFFIXES = (".test.yaml", ".test.yml")
_RELATIVE_RE = re.compile(r"now\s*(?:([+-])\s*(.+))?")
# Steps that move the case's clock, and with `change` those that make a case a rehearsal
# of the daemon (crmflow.daemon.rehearsal).
_CLOCK_STEPS = ("advance", "to")
_TIME_STEPS = ("change", *_CLOCK_STEPS)


@dataclass
class CaseResult:
    file: str
    name: str
    line: int
    failures: list[str] = field(default_factory=list)
    diff: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def node_id(self) -> str:
        return f"{self.file}::{self.name}"


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(TEST_SCHEMA)


def load_test_file(path: Path) -> Document:
    from crmflow.rules.validate import schema_findings

    docs = load_file(path)
    if not docs:
        raise ConfigError("test file is empty", None)
    doc = docs[0]
    problems = schema_findings(doc, _validator(), workflow="")
    if problems:
        # Every mistake of the file at once, one line each.
        errors = [ConfigError(p.message, p.location, p.code) for p in problems]
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return doc


def resolve_time(text: Any, now: datetime, tz: tzinfo = UTC) -> datetime | None:
    """`now`, `now+14d`, `now-2h` or an ISO date-time."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    m = _RELATIVE_RE.fullmatch(text.strip())
    if m is None:
        return parse_instant(text)
    if m.group(1) is None:
        return now
    return durations.parse(m.group(1) + m.group(2), signed=True).add_to(now, tz)


@dataclass(frozen=True)
class _Setting:
    """When and where a case runs: its own, else its file's, else the clock and config."""

    now: datetime
    tz: tzinfo


def _setting(doc: Document, path: tuple[Any, ...], fallback: _Setting) -> _Setting:
    data = doc.data
    for key in path:
        data = data[key]
    now, tz = fallback.now, fallback.tz
    try:
        if "now" in data:
            now = parse_instant(data["now"])
        if "timezone" in data:
            # Another zone, the same working calendar.
            tz = with_calendar(zone(data["timezone"]), calendar_of(tz))
    except ValueError as exc:
        key = "now" if "now" in data and "timezone" not in str(exc) else "timezone"
        raise ConfigError(str(exc), doc.locate((*path, key)), "CF210") from None
    if "calendar" in data:
        try:
            tz = with_calendar(tz, calendar_from(data["calendar"]))
        except ValueError as exc:
            location = doc.locate((*path, "calendar"))
            raise ConfigError(f"calendar: {exc}", location, "CF104") from None
    return _Setting(now, tz)


class Compiled:
    """The workflows under test, compiled once for each time zone the cases ask for.

    Conditions and triggers bind their time zone when compiled (relative dates, calendar
    offsets), so a case in another zone needs its own compilation, not a re-evaluation.
    """

    def __init__(self, documents: list[Document], config: Config) -> None:
        self.documents = documents
        self.config = config
        self._by_zone: dict[tzinfo, RuleSet] = {}

    def __call__(self, tz: tzinfo) -> RuleSet:
        rules = self._by_zone.get(tz)
        if rules is None:
            rules = compile_documents(self.documents, replace(self.config, timezone=tz))
            self._by_zone[tz] = rules
        return rules


def run_file(
    path: Path, compiled: Compiled, config: Config, clock_now: datetime
) -> list[CaseResult]:
    doc = load_test_file(path)
    file_setting = _setting(doc, (), _Setting(clock_now, config.timezone))
    for index in range(len(doc.data["cases"])):
        _check_steps(doc, index)
    results = []
    for index, case in enumerate(doc.data["cases"]):
        location = doc.locate(("cases", index))
        result = CaseResult(str(path), case["name"], location.line)
        started = time.perf_counter()
        try:
            setting = _setting(doc, ("cases", index), file_setting)
            locate = partial(_locate, doc, ("cases", index))
            _run_case(case, compiled(setting.tz), config, setting, result, locate)
        except (ValueError, EventError, ConfigError) as exc:
            result.failures.append(f"bad test case: {exc}")
        result.seconds = time.perf_counter() - started
        results.append(result)
    return results


def _locate(doc: Document, base: tuple[Any, ...], *keys: Any) -> Location:
    return doc.locate((*base, *keys))


def _check_steps(doc: Document, index: int) -> None:
    """What the schema cannot say about a case's steps, as one line naming the place."""
    steps = doc.data["cases"][index].get("events") or []
    seen_event = False
    for number, step in enumerate(steps):
        path = ("cases", index, "events", number)
        kind = next((k for k in _CLOCK_STEPS if k in step), None)
        for key in ("matched", "rules"):
            if kind is not None and key in (step.get("expect") or {}):
                raise ConfigError(
                    f"cases[{index}].events[{number}].expect: {key!r} needs an event; "
                    f"a step that moves the clock ({kind}) expects only 'due'",
                    doc.locate((*path, "expect", key), key=True),
                    "CF101",
                )
        if "change" in step and "of" not in step and not seen_event:
            raise ConfigError(
                f"cases[{index}].events[{number}].change: no record to change yet "
                "(give an event first, or say which record with `of`)",
                doc.locate((*path, "change"), key=True),
                "CF102",
            )
        seen_event = seen_event or "event" in step


@dataclass
class _Step:
    """What one step gave: its plan (an event step), what fell due (a case with time
    steps), and the moment `now` means in its expectations."""

    now: datetime
    plan: dict[str, Any] | None = None
    due: list[dict[str, Any]] | None = None


Locate = Callable[..., Location]


class _Frozen:
    """A case whose clock stands still: each event is evaluated at the case's now."""

    def __init__(self, rules: RuleSet, config: Config, setting: _Setting, seed: int) -> None:
        self.config = config
        self.setting = setting
        self.evaluator = Evaluator(rules, setting.tz, seed=seed)

    def step(self, step: dict[str, Any], locate: Locate) -> _Step:
        now, tz = self.setting.now, self.setting.tz
        raw = dict(step["event"])
        if "at" in raw:
            raw["at"] = format_utc(resolve_time(raw["at"], now, tz))  # type: ignore[arg-type]
        event = parse_event(raw, self.config.model)
        plan = self.evaluator.evaluate(event, now)
        return _Step(event.at or now, plan.to_json())

    def close(self) -> None:
        pass


class _Timeline:
    """A case that changes records and moves its clock: the daemon, rehearsed dry.

    Times in a step count from the clock as the step begins; an event happens at the
    clock's time unless it says `at`.
    """

    def __init__(self, rules: RuleSet, config: Config, setting: _Setting, seed: int) -> None:
        from crmflow.daemon.rehearsal import Rehearsal

        self.config = config
        self.tz = setting.tz
        self.rehearsal = Rehearsal(rules, config, setting.tz, setting.now, seed=seed)
        self.last: tuple[str, Any] | None = None  # the record a `change` changes

    def step(self, step: dict[str, Any], locate: Locate) -> _Step:
        from crmflow.daemon.rehearsal import TooMuchDue

        start = self.rehearsal.now
        try:
            if "advance" in step:
                return _Step(start, due=self._advance(self._after(step["advance"], locate)))
            if "to" in step:
                return _Step(start, due=self._advance(self._moment(step["to"], locate)))
            event = self._event(step, locate)
        except TooMuchDue as exc:
            raise ConfigError(str(exc), locate("advance" if "advance" in step else "to")) from None
        self.last = (event.entity, event.id)
        plan, due = self.rehearsal.handle(event)
        return _Step(event.at or start, plan.to_json(), [d.to_json() for d in due])

    def _after(self, text: str, locate: Locate) -> datetime:
        try:
            return durations.parse(text).add_to(self.rehearsal.now, self.tz)
        except ValueError as exc:
            raise ConfigError(f"advance: {exc}", locate("advance")) from None

    def _moment(self, text: str, locate: Locate) -> datetime:
        now = self.rehearsal.now
        try:
            moment = resolve_time(text, now, self.tz)
        except ValueError as exc:
            raise ConfigError(f"to: {exc}", locate("to")) from None
        assert moment is not None
        if moment < now:
            raise ConfigError(
                f"to: {format_utc(moment)} is before the case's clock ({format_utc(now)}); "
                "time only moves forward",
                locate("to"),
            )
        return moment

    def _advance(self, moment: datetime) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.rehearsal.advance(moment)]

    def _event(self, step: dict[str, Any], locate: Locate) -> Event:
        now = self.rehearsal.now
        if "event" in step:
            raw = dict(step["event"])
            raw["at"] = format_utc(resolve_time(raw.get("at", "now"), now, self.tz))  # type: ignore[arg-type]
            return parse_event(raw, self.config.model)
        if "of" in step:
            entity, record_id = step["of"]["entity"], step["of"]["id"]
        else:
            assert self.last is not None  # _check_steps: an event came first
            entity, record_id = self.last
        current = self.rehearsal.current(entity, record_id)
        if current is None:
            raise ConfigError(
                f"change: no {entity} {record_id} to change "
                "(no step created it, or one deleted it)",
                locate("of" if "of" in step else "change"),
            )
        raw = {
            "entity": entity,
            "event": "updated",
            "record": {**current, **step["change"]},
            "previous": current,
            "at": format_utc(now),
        }
        if "actor" in step:
            raw["actor"] = step["actor"]
        return parse_event(raw, self.config.model)

    def close(self) -> None:
        self.rehearsal.close()


def _rehearsed(steps: list[dict[str, Any]]) -> bool:
    """Whether a case changes records or moves its clock (or asks what fell due)."""
    return any(
        any(k in step for k in _TIME_STEPS) or "due" in (step.get("expect") or {}) for step in steps
    )


def _run_case(
    case: dict[str, Any],
    rules: RuleSet,
    config: Config,
    setting: _Setting,
    result: CaseResult,
    locate: Locate,
) -> None:
    steps = case.get("events") or [{"event": case["event"], "expect": case.get("expect")}]
    kind = _Timeline if _rehearsed(steps) else _Frozen
    runner = kind(rules, config, setting, case.get("seed", 0))
    expected_all: list[Any] = []
    actual_all: list[Any] = []
    try:
        for number, step in enumerate(steps):
            where = ("events", number) if "events" in case else ()
            done = runner.step(step, partial(locate, *where))
            expect = step.get("expect")
            if not expect:
                continue
            label = f"events[{number}]: " if "events" in case else ""
            failures, exp_view, act_view = _compare(expect, done, setting.tz, label)
            result.failures.extend(failures)
            expected_all.append(exp_view)
            actual_all.append(act_view)
    finally:
        runner.close()
    if result.failures:
        exp_text = json.dumps(expected_all, indent=2, ensure_ascii=False).splitlines()
        act_text = json.dumps(actual_all, indent=2, ensure_ascii=False).splitlines()
        result.diff = "\n".join(
            difflib.unified_diff(exp_text, act_text, "expected", "actual", lineterm="")
        )


def _compare(
    expect: dict[str, Any], done: _Step, tz: tzinfo, label: str
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    failures: list[str] = []
    exp_view: dict[str, Any] = {}
    act_view: dict[str, Any] = {}
    if done.plan is not None:
        failures += _compare_plan(expect, done.plan, done.now, tz, label, exp_view, act_view)
    if "due" in expect:
        want = [_normalise_due(entry, done.now, tz) for entry in expect["due"]]
        got = done.due or []
        exp_view["due"], act_view["due"] = want, _project(want, got)
        failures += _match_due(want, got, f"{label}due")
    return failures, exp_view, act_view


def _compare_plan(
    expect: dict[str, Any],
    plan: dict[str, Any],
    now: datetime,
    tz: tzinfo,
    label: str,
    exp_view: dict[str, Any],
    act_view: dict[str, Any],
) -> list[str]:
    failures: list[str] = []
    rules = {r["rule"]: r for r in plan["rules"]}
    if "matched" in expect:
        got = sorted(r["rule"] for r in plan["rules"] if r["matched"])
        want = sorted(expect["matched"])
        exp_view["matched"], act_view["matched"] = want, got
        if got != want:
            failures.append(f"{label}matched: expected {want}, got {got}")
    for rule_id, spec in (expect.get("rules") or {}).items():
        if isinstance(spec, bool):
            spec = {"matched": spec}
        actual = rules.get(rule_id)
        if actual is None:
            failures.append(
                f"{label}rules.{rule_id}: not evaluated for this event "
                "(unknown id, disabled, or another entity)"
            )
            continue
        want = _normalise_rule(spec, now, tz)
        got = _project(want, actual)
        exp_view.setdefault("rules", {})[rule_id] = want
        act_view.setdefault("rules", {})[rule_id] = got
        failures.extend(_match(want, actual, f"{label}rules.{rule_id}"))
    return failures


def _normalise_due(entry: dict[str, Any], now: datetime, tz: tzinfo) -> dict[str, Any]:
    out = dict(entry)
    if "at" in entry:
        out["at"] = format_utc(resolve_time(entry["at"], now, tz))  # type: ignore[arg-type]
    return out


def _summary(entry: dict[str, Any]) -> str:
    return f"{entry['rule']} {entry['type']} {entry['outcome']}"


def _match_due(want: list[dict[str, Any]], got: list[dict[str, Any]], where: str) -> list[str]:
    if len(got) != len(want):
        # Entries out of step would each report every key: the count and the diff say more.
        return [f"{where}: expected {len(want)}, got {len(got)}: {[_summary(g) for g in got]}"]
    failures = []
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        failures.extend(_match_due_entry(w, g, f"{where}[{i}]"))
    return failures


def _match_due_entry(want: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
    failures = []
    for key in ("rule", "type", "outcome", "at"):
        if key in want and want[key] != got.get(key):
            # A wrong outcome is best understood with the daemon's reason for it.
            why = f" ({got['reason']})" if key == "outcome" and got.get("reason") else ""
            failures.append(f"{where}.{key}: expected {want[key]!r}, got {got.get(key)!r}{why}")
    # Ids as the case wrote them, or as text: 31 and "31" name the same record.
    if "record" in want and str(want["record"]) != str(got.get("record")):
        failures.append(f"{where}.record: expected {want['record']!r}, got {got.get('record')!r}")
    if "reason" in want:
        reason = got.get("reason") or ""
        if want["reason"] not in reason:
            failures.append(
                f"{where}.reason: expected it to contain {want['reason']!r}, got {reason!r}"
            )
    if "params" in want:
        if "params" not in got:
            failures.append(f"{where}.params: none ({got['outcome']}, not fired)")
        else:
            failures.extend(subset_mismatches(want["params"], got["params"], f"{where}.params"))
    return failures


def _normalise_rule(spec: dict[str, Any], now: datetime, tz: tzinfo) -> dict[str, Any]:
    out = dict(spec)
    if "actions" in spec:
        actions = []
        for action in spec["actions"]:
            action = dict(action)
            if "due" in action and action["due"] is not None:
                action["due"] = format_utc(resolve_time(action["due"], now, tz))  # type: ignore[arg-type]
            actions.append(action)
        out["actions"] = actions
    return out


def _project(expected: Any, actual: Any) -> Any:
    """`actual` restricted to the keys `expected` names, for a readable diff."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _project(v, actual[k]) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list):
        return [_project(e, a) for e, a in zip(expected, actual, strict=False)] + actual[
            len(expected) :
        ]
    return actual


def _match(want: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
    failures = []
    if "matched" in want and want["matched"] != got["matched"]:
        detail = f" ({got.get('reason')})" if not got["matched"] else ""
        failures.append(
            f"{where}.matched: expected {want['matched']}, got {got['matched']}{detail}"
        )
        return failures
    if "reason" in want:
        reason = got.get("reason") or ""
        if want["reason"] not in reason:
            failures.append(
                f"{where}.reason: expected it to contain {want['reason']!r}, got {reason!r}"
            )
    if "actions" in want:
        actual = got.get("actions", [])
        if len(actual) != len(want["actions"]):
            failures.append(
                f"{where}.actions: expected {len(want['actions'])} actions, "
                f"got {len(actual)}: {[a['type'] for a in actual]}"
            )
        for i, (w, a) in enumerate(zip(want["actions"], actual, strict=False)):
            failures.extend(_match_action(w, a, f"{where}.actions[{i}]"))
    return failures


def _match_action(want: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
    failures = []
    for key in ("type", "due", "after_wait"):
        if key in want and want[key] != got.get(key, False if key == "after_wait" else None):
            failures.append(f"{where}.{key}: expected {want[key]!r}, got {got.get(key)!r}")
    for key in ("error", "skipped"):
        if key not in want:
            continue
        value = got.get(key)
        if want[key] is True and value is None:
            failures.append(f"{where}.{key}: expected one, got none")
        elif want[key] is False and value is not None:
            failures.append(f"{where}.{key}: expected none, got {value!r}")
        elif isinstance(want[key], str) and (value is None or want[key] not in value):
            failures.append(f"{where}.{key}: expected it to contain {want[key]!r}, got {value!r}")
    if "params" in want:
        if "params" not in got:
            failures.append(f"{where}.params: none ({got.get('error') or got.get('skipped')})")
        else:
            failures.extend(subset_mismatches(want["params"], got["params"], f"{where}.params"))
    return failures


def subset_mismatches(want: Any, got: Any, where: str) -> list[str]:
    """Where `got` differs from `want`: mappings may hold more keys, lists must match fully."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected a mapping, got {got!r}"]
        out = []
        for key, value in want.items():
            if key not in got:
                out.append(f"{where}.{key}: missing")
            else:
                out.extend(subset_mismatches(value, got[key], f"{where}.{key}"))
        return out
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: expected {want!r}, got {got!r}"]
        return [
            m
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for m in subset_mismatches(w, g, f"{where}[{i}]")
        ]
    from crmflow.values import same

    if not same(want, got):
        return [f"{where}: expected {want!r}, got {got!r}"]
    return []


def junit_xml(results: list[CaseResult], seconds: float) -> str:
    from xml.etree import ElementTree as ET

    suite = ET.Element(
        "testsuite",
        name="crmflow",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed)),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=r.file,
            name=r.name,
            time=f"{r.seconds:.3f}",
            file=r.file,
            line=str(r.line),
        )
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.failures[0])
            failure.text = "\n".join(r.failures) + ("\n\n" + r.diff if r.diff else "")
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)


def run_tests(config: Config, paths: list[Path], out: IO[str], junit: Path | None) -> int:
    """Run every *.test.yaml under `paths`; print results like pytest; 0 pass, 1 fail."""
    from crmflow.rules.ruleset import load_valid_documents
    from crmflow.rules.yamlload import iter_yaml_files
    from crmflow.timeutil import system_clock

    started = time.perf_counter()
    for root in paths:
        if not root.exists():
            raise ConfigError(f"{root}: no such file or folder")
    test_files = list(iter_yaml_files(paths, tests=True))
    workflow_roots = [p for p in paths if p.is_dir() or not p.name.endswith(_TEST_SUFFIXES)]
    if not workflow_roots:
        workflow_roots = sorted({p.parent for p in test_files})
    compiled = Compiled(load_valid_documents(workflow_roots, config), config)
    clock_now = system_clock()
    results: list[CaseResult] = []
    for file in test_files:
        file_results = run_file(file, compiled, config, clock_now)
        results.extend(file_results)
        for r in file_results:
            out.write(f"{r.node_id} {'PASSED' if r.passed else 'FAILED'}\n")
    failed = [r for r in results if not r.passed]
    for r in failed:
        out.write(f"\n___ {r.node_id} (line {r.line}) ___\n")
        for failure in r.failures:
            out.write(f"  {failure}\n")
        if r.diff:
            out.write("\n" + "\n".join("  " + line for line in r.diff.splitlines()) + "\n")
    elapsed = time.perf_counter() - started
    if junit is not None:
        junit.write_text(junit_xml(results, elapsed), encoding="utf-8")
    if not test_files:
        out.write(f"no test files (*.test.yaml) under {', '.join(map(str, paths))}\n")
    out.write(f"\n{len(results) - len(failed)} passed, {len(failed)} failed\n")
    out.flush()
    return 1 if failed or not results else 0
