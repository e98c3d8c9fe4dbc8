"""`crmflow eval`: a stream of events in, one plan per event out, in constant memory."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import IO, Any

from crmflow.config import Config
from crmflow.errors import EXIT_ACTION_FAILED, EXIT_BAD_INPUT, EXIT_OK, ConfigError, EventError
from crmflow.timeutil import parse_instant, system_clock


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
    status = EXIT_OK
    _decode_leniently(source)
    try:
        for item in read_events(source, config.model):
            if isinstance(item, EventError):
                print(f"crmflow: {item}", file=errors)
                status = EXIT_BAD_INPUT
                continue
            try:
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
