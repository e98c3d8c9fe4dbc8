"""`crmflow eval`: a stream of events in, one plan per event out, in constant memory."""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crmflow.config import Config
from crmflow.errors import EXIT_ACTION_FAILED, EXIT_BAD_INPUT, EXIT_OK, ConfigError, EventError
from crmflow.timeutil import format_utc, parse_instant, system_clock

if TYPE_CHECKING:
    from crmflow.engine.evaluate import PlannedAction, RulePlan
    from crmflow.engine.events import Event
    from crmflow.rules.workflow import Workflow


def run_eval(
    config: Config,
    rule_paths: list[Path],
    source: IO[str],
    sink: IO[str],
    *,
    dry_run: bool,
    fmt: str,
    now: str | None = None,
    seed: int | None = None,
    explain: bool = False,
    stderr: IO[str] | None = None,
    services: Any = None,
) -> int:
    """Evaluate every event of `source`; returns the exit code.

    `services` (crmflow.engine.effects.base.Services) replaces how actions reach the world,
    e.g. a clock, a sleep or a DNS resolver of one's own.
    """
    from crmflow.engine.events import read_events
    from crmflow.engine.runtime import build_runtime
    from crmflow.rules.ruleset import load_ruleset

    errors = stderr or sys.stderr
    fixed_now = None
    if now is not None:
        try:
            fixed_now = parse_instant(now)
        except ValueError as exc:
            raise ConfigError(f"--now: {exc}") from None
    rules = load_ruleset(rule_paths, config)
    runtime = build_runtime(config, dry_run=dry_run, services=services, seed=seed, explain=explain)
    executor = runtime.executor
    if executor is not None:
        executor.notice = lambda text: print(f"crmflow: {text}", file=errors, flush=True)
    evaluator = runtime.evaluator(rules)
    write = _json_writer(sink, explain) if fmt == "json" else _text_writer(sink, explain)
    brief = words = None
    if fmt == "json" and not explain and executor is None:
        brief = _brief_writer(sink, _careful_writer(sink))
        words = brief.words
    status = EXIT_OK
    _decode_leniently(source)
    try:
        for item in read_events(source, config.model):
            if isinstance(item, EventError):
                print(f"crmflow: {item}", file=errors)
                status = EXIT_BAD_INPUT
                continue
            try:
                if brief is not None:
                    # A dry run written as JSON: the workflows that do not fire need only
                    # their id and reason, no plan objects.
                    brief(item, *evaluator.evaluate_brief(item, fixed_now or system_clock(), words))
                    continue
                plan = evaluator.evaluate(item, fixed_now or system_clock())
            except OverflowError as exc:
                # A date of the event moved past year 9999 (or before year 1) by a delay,
                # an offset or a time zone: bad input for this event, the stream goes on.
                print(f"crmflow: line {item.line}: a date is out of range: {exc}", file=errors)
                status = EXIT_BAD_INPUT
                continue
            if executor is not None:
                executor.record_plan(plan)
            write(plan)
        sink.flush()
    finally:
        runtime.dispose()
    if executor is not None and executor.failed and status == EXIT_OK:
        return EXIT_ACTION_FAILED
    return status


def _decode_leniently(source: IO[str]) -> None:
    """Bytes that are not UTF-8 reach read_events as lone surrogates, which it reports."""
    if isinstance(source, io.TextIOWrapper):
        source.reconfigure(errors="surrogateescape")


# Fragments of plan lines kept for reuse: most workflows that do not match an event say
# so in words other events repeat (their trigger, or the same value seen).
FRAGMENTS_KEPT = 8_192


def _json_writer(sink: IO[str], explain: bool) -> Any:
    # Strict JSON (RFC 8259): no NaN or Infinity, which Python's json writes by default.
    strict = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str).encode
    fragments: dict[tuple[str, str | None], str] = {}

    def unmatched(rule: Any) -> str:
        """`{"rule": …, "matched": false, "reason": …}` as `strict` writes it."""
        key = (rule.rule, rule.reason)
        text = fragments.get(key)
        if text is None:
            if len(fragments) >= FRAGMENTS_KEPT:
                fragments.clear()
            text = fragments[key] = strict(rule.to_json())
        return text

    def line_of(plan: Any) -> str:
        """The plan as `strict(plan.to_json())` writes it, unmatched workflows reused."""
        event = plan.event
        head = strict({"entity": event.entity, "event": event.event, "id": event.id})
        rules = ", ".join(
            strict(rule.to_json()) if rule.matched else unmatched(rule) for rule in plan.rules
        )
        return f'{{"event": {head}, "rules": [{rules}]}}'

    careful = _careful_writer(sink)

    def write(plan: Any) -> None:
        if not explain:
            try:
                text = line_of(plan)
                text.encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                pass  # a NaN, an infinity or a lone surrogate: the careful way below
            else:
                sink.write(text)
                sink.write("\n")
                return
        data = plan.to_json()
        if explain:
            for rule, out in zip(plan.rules, data["rules"], strict=True):
                if rule.trace is not None:
                    out["explain"] = [
                        {"depth": d, "ok": ok, "clause": text} for d, ok, text in rule.trace.lines()
                    ]
        careful(data)

    return write


def _careful_writer(sink: IO[str]) -> Callable[[dict[str, Any]], None]:
    """Writes a plan's data as strict JSON whatever it holds, on a line of its own."""
    strict = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str).encode

    def careful(data: dict[str, Any]) -> None:
        try:
            text = strict(data)
        except ValueError:  # a NaN or an infinity a template made: written as null
            text = strict(_finite(data))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, still valid JSON
            text = json.dumps(_finite(data), allow_nan=False, default=str)
        sink.write(text)
        sink.write("\n")

    return careful


def _brief_writer(sink: IO[str], careful: Callable[[dict[str, Any]], None]) -> Any:
    """Writes what `Evaluator.evaluate_brief` decided, as `_json_writer` writes the plan.

    A workflow that does not fire comes as its fragment of the line, worded by `_Words`
    where its reason was found; one that fires is written here, its actions by hand as
    `strict` would write them. Anything the fast way cannot write exactly (a NaN, a lone
    surrogate) goes to `careful` as the plan's data.
    """
    from crmflow.rules.templates import iter_templates

    strict = _strict_encoder()
    quote = json.encoder.encode_basestring
    words = _Words(quote)
    heads: dict[tuple[str, str], str] = {}
    # What a workflow that fires starts with, by id.
    openers: dict[str, str] = {}
    # An action's parameters as JSON, by action, for those without templates (their
    # parameters are the same for every event).
    constant: dict[int, str | None] = {}
    # Due times as JSON, by instant: an event's actions are mostly due at its own time.
    dues: dict[datetime, str] = {}

    def head_of(event: Event) -> str:
        """`{"event": {"entity": …, "event": …, "id": ` as `strict` writes it."""
        key = (event.entity, event.event)
        text = heads.get(key)
        if text is None:
            text = heads[key] = (
                f'{{"event": {{"entity": {strict(key[0])}, "event": {strict(key[1])}, "id": '
            )
        return text

    def params_of(planned: PlannedAction, workflow: Workflow | None) -> str:
        action = None
        if workflow is not None and planned.index < len(workflow.actions):
            action = workflow.actions[planned.index]
        if action is None or action.index != planned.index:
            return strict(planned.params)
        text = constant.get(id(action), "")
        if text == "":
            fixed = action.type == "wait" or next(iter_templates(action.params), None) is None
            text = constant[id(action)] = strict(planned.params) if fixed else None
        return strict(planned.params) if text is None else text

    def planned(plan: RulePlan) -> str:
        """`strict(plan.to_json())`, written by hand."""
        if not plan.matched:
            # A date trigger or a cooldown held it back (the evaluator judged it).
            return f"{words.prefix(plan.rule)}{strict(plan.reason)}}}"
        opener = openers.get(plan.rule)
        if opener is None:
            opener = openers[plan.rule] = (
                f'{{"rule": {quote(plan.rule)}, "matched": true, "actions": ['
            )
        parts = []
        for planned in plan.actions:
            due = planned.due
            if due is None:
                when = "null"
            else:
                when = dues.get(due)  # type: ignore[assignment]
                if when is None:
                    if len(dues) >= FRAGMENTS_KEPT:
                        dues.clear()
                    when = dues[due] = quote(format_utc(due))
            text = f'{{"type": {quote(planned.type)}, "due": {when}'
            if planned.error is not None:
                text += f', "error": {quote(planned.error)}'
            elif planned.skipped is not None:
                text += f', "skipped": {quote(planned.skipped)}'
            else:
                text += f', "params": {params_of(planned, plan.workflow)}'
            if planned.after_wait:
                text += ', "after_wait": true'
            if planned.status is not None:
                text += f', "status": {quote(planned.status)}, "result": {strict(planned.result)}'
            parts.append(text + "}")
        return f"{opener}{', '.join(parts)}]}}"

    def write(event: Event, at: datetime, decisions: list[Any]) -> None:
        try:
            ident = event.id
            rules = ", ".join(
                [d if type(d) is str else planned(d) for d in decisions]  # type: ignore[arg-type]
            )
            text = (
                f"{head_of(event)}{ident if type(ident) is int else strict(ident)}}}, "
                f'"rules": [{rules}]}}\n'
            )
            if not text.isascii():
                text.encode("utf-8")
        except (ValueError, UnicodeEncodeError):
            # A NaN, an infinity or a lone surrogate: the careful way, from the data the
            # fragments stand for (each is the JSON of a workflow that does not fire).
            careful(
                {
                    "event": {"entity": event.entity, "event": event.event, "id": event.id},
                    "rules": [
                        json.loads(d) if type(d) is str else d.to_json()  # type: ignore[union-attr]
                        for d in decisions
                    ],
                }
            )
            return
        sink.write(text)

    def worded(plan: RulePlan) -> Any:
        """The plan as its fragment of a line, or itself where only the careful way can."""
        try:
            return planned(plan)
        except ValueError:  # a NaN or an infinity
            return plan

    words.plan_words = worded
    write.words = words  # type: ignore[attr-defined]
    return write


class _Words:
    """Workflows that do not fire, worded as their part of a plan's JSON line.

    `{"rule": …, "matched": false, "reason": …}` as `strict` writes it, made where the
    decisions find the reason (crmflow.engine.matcher.Wording). Fragments of reasons
    that quote a value are kept by the value while it repeats; at most FRAGMENTS_KEPT of
    them, all forgotten at once when full (constant memory on any stream).
    """

    def __init__(self, quote: Callable[[str], str]) -> None:
        from crmflow.engine.matcher import change_reason
        from crmflow.values import display

        # The words of reasons, as the evaluator has them.
        self.display, self.change_reason = display, change_reason
        self.quote = quote
        self.prefixes: dict[str, str] = {}
        self.kept: list[dict[Any, str]] = []
        self.count = 0
        # How a whole plan is worded: the writer knows.
        self.plan_words: Callable[[Any], Any] = lambda plan: plan

    def prefix(self, rule: str) -> str:
        text = self.prefixes.get(rule)
        if text is None:
            text = self.prefixes[rule] = (
                f'{{"rule": {self.quote(rule)}, "matched": false, "reason": '
            )
        return text

    def keep(self, kept: dict[Any, str], key: Any, text: str) -> None:
        if self.count >= FRAGMENTS_KEPT:
            # Cleared in place: generated decisions hold these dictionaries.
            for each in self.kept:
                each.clear()
            self.count = 0
        kept[key] = text
        self.count += 1

    def fixed(self, rule: str, reason: str) -> str:
        return f"{self.prefix(rule)}{self.quote(reason)}}}"

    def seen(self, rule: str, label: str) -> _Seen:
        return _Seen(self, self.prefix(rule), f"{label}: was ")

    def changed(self, rule: str, label: str, name: str) -> _Changed:
        return _Changed(self, self.prefix(rule), label, name)

    def planned(self, plan: Any) -> Any:
        return self.plan_words(plan)

    def said(self, rule: str) -> Callable[[str], str]:
        prefix, quote, keep = self.prefix(rule), self.quote, self.keep
        kept: dict[str, str] = {}
        self.kept.append(kept)

        def said(reason: str) -> str:
            text = kept.get(reason)
            if text is None:
                text = f"{prefix}{quote(reason)}}}"
                keep(kept, reason, text)
            return text

        return said


class _Seen:
    """The fragments of one clause's "LABEL: was VALUE", string values kept by the value."""

    def __init__(self, words: _Words, prefix: str, was: str) -> None:
        self.words = words
        self.prefix = prefix
        self.was = was
        self.kept: dict[Any, str] = {}
        words.kept.append(self.kept)

    def __call__(self, value: Any) -> str:
        text = f"{self.prefix}{self.words.quote(self.was + self.words.display(value))}}}"
        if type(value) is str or type(value) is int:
            self.words.keep(self.kept, value, text)
        return text


class _Changed:
    """The fragments of one change clause that failed on an update, kept by the values."""

    def __init__(self, words: _Words, prefix: str, label: str, name: str) -> None:
        self.words = words
        self.prefix = prefix
        self.label = label
        self.name = name
        self.kept: dict[tuple[str | None, str | None], str] = {}
        words.kept.append(self.kept)  # type: ignore[arg-type]

    def __call__(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> str:
        key = None
        if previous is not None:
            old, new = previous.get(self.name), record.get(self.name)
            if (old is None or type(old) is str) and (new is None or type(new) is str):
                key = (old, new)
                text = self.kept.get(key)
                if text is not None:
                    return text
        reason = self.words.change_reason(self.label, previous, record, self.name)
        text = f"{self.prefix}{self.words.quote(reason)}}}"
        if key is not None:
            self.words.keep(self.kept, key, text)  # type: ignore[arg-type]
        return text


def _strict_encoder() -> Callable[[Any], str]:
    """What `JSONEncoder(ensure_ascii=False, allow_nan=False, default=str).encode` writes.

    The C encoder made once: `encode` makes a new one for every call, which costs more
    than writing a plan's few small values.
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return encode
    chunks = make(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, False)

    def strict(data: Any) -> str:
        return "".join(chunks(data, 0))

    return strict


def _finite(data: Any) -> Any:
    """`data` with every NaN and infinity replaced by null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def _text_writer(sink: IO[str], explain: bool) -> Any:
    from rich.console import Console

    from crmflow.commands.render import print_plan

    console = Console(file=sink, highlight=False, soft_wrap=True)

    def write(plan: Any) -> None:
        print_plan(console, plan, explain=explain)

    return write
