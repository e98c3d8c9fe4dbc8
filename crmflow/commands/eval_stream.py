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
from crmflow.timeutil import parse_instant, system_clock

if TYPE_CHECKING:
    from crmflow.engine.evaluate import Decision
    from crmflow.engine.events import Event


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
    brief = None
    if fmt == "json" and not explain and executor is None:
        brief = _brief_writer(sink, write)
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
                    brief(item, *evaluator.evaluate_brief(item, fixed_now or system_clock()))
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

    def dumps(data: Any) -> str:
        try:
            text = strict(data)
        except ValueError:  # a NaN or an infinity a template made: written as null
            text = strict(_finite(data))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, still valid JSON
            text = json.dumps(_finite(data), allow_nan=False, default=str)
        return text

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
        sink.write(dumps(data))
        sink.write("\n")

    return write


def _brief_writer(sink: IO[str], careful: Any) -> Any:
    """Writes what `Evaluator.evaluate_brief` decided, as `_json_writer` writes the plan.

    A workflow that does not fire is a fragment kept by (id, reason): most events repeat
    the words of others (a trigger that does not take them, the same value seen). Anything
    the fast way cannot write exactly (a NaN, a lone surrogate) goes to `careful`, the
    plan's own writer.
    """
    from crmflow.engine.evaluate import Plan, RulePlan

    strict = _strict_encoder()
    fragments: dict[tuple[str, str], str] = {}
    heads: dict[tuple[str, str], str] = {}

    prefixes: dict[str, str] = {}

    def unmatched(key: tuple[str, str]) -> str:
        if len(fragments) >= FRAGMENTS_KEPT:
            fragments.clear()
        # A reason seen for the first time (a value it quotes) is the common miss: the
        # workflow's part of the fragment is kept apart, for the next reason it gives.
        prefix = prefixes.get(key[0])
        if prefix is None:
            prefix = prefixes[key[0]] = f'{{"rule": {strict(key[0])}, "matched": false, "reason": '
        text = fragments[key] = f"{prefix}{strict(key[1])}}}"
        return text

    def head_of(event: Event) -> str:
        """`{"event": {"entity": …, "event": …, "id": ` as `strict` writes it."""
        key = (event.entity, event.event)
        text = heads.get(key)
        if text is None:
            text = heads[key] = (
                f'{{"event": {{"entity": {strict(key[0])}, "event": {strict(key[1])}, "id": '
            )
        return text

    def write(event: Event, at: datetime, decisions: list[Decision]) -> None:
        get = fragments.get
        try:
            ident = event.id
            rules = ", ".join(
                [
                    (get(d) or unmatched(d)) if type(d) is tuple else strict(d.to_json())  # type: ignore[union-attr]
                    for d in decisions
                ]
            )
            text = (
                f"{head_of(event)}{ident if type(ident) is int else strict(ident)}}}, "
                f'"rules": [{rules}]}}\n'
            )
            text.encode("utf-8")
        except (ValueError, UnicodeEncodeError):
            # A NaN, an infinity or a lone surrogate: the careful way.
            plans = [RulePlan(d[0], False, d[1]) if type(d) is tuple else d for d in decisions]
            careful(Plan(event, at, plans))  # type: ignore[arg-type]
            return
        sink.write(text)

    return write


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
