"""Plans for people: the rich rendering `crmflow eval` prints without --format json."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.text import Text

from crmflow.engine.evaluate import Plan
from crmflow.timeutil import format_utc
from crmflow.values import printable


def escape(text: str) -> str:
    """Text from workflows or CRM data for the terminal: markup and control characters
    (escape sequences that would recolour or move the cursor) shown, not obeyed."""
    return _markup_escape(printable(text))


def _value(value: Any, indent: int = 8) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    # Continuation lines of a multi-line body stay under their key.
    return text.rstrip("\n").replace("\n", "\n" + " " * indent)


def print_plan(console: Console, plan: Plan, *, explain: bool = False) -> None:
    event = plan.event
    ident = f" #{event.id}" if event.id is not None else ""
    header = Text.assemble(
        (printable(f"{event.entity}{ident}"), "bold"),
        f" {event.event}",
        (f"  at {format_utc(plan.now)}", "dim"),
    )
    if event.line:
        header.append(f"  (line {event.line})", "dim")
    console.print(header)
    if not plan.rules:
        console.print("  [dim]no enabled workflow for this entity[/dim]")
    for rule in plan.rules:
        workflow = rule.workflow
        title = f" — {escape(workflow.name)}" if workflow is not None and workflow.name else ""
        if not rule.matched:
            console.print(
                f"  [red]✗[/red] [bold]{escape(rule.rule)}[/bold]{title}: "
                f"[dim]{escape(rule.reason or '')}[/dim]"
            )
        else:
            console.print(f"  [green]✓[/green] [bold]{escape(rule.rule)}[/bold]{title}")
        if explain and rule.trace is not None:
            for depth, ok, text in rule.trace.lines():
                mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
                console.print("      " + "  " * depth + f"{mark} {escape(text)}")
        for action in rule.actions:
            due = format_utc(action.due) if action.due else "when the wait ends"
            after = " after wait" if action.after_wait else ""
            label = f"    [cyan]{action.type}[/cyan] [dim]due {due}{after}[/dim]"
            if action.error is not None:
                console.print(f"{label} [red]error: {escape(action.error)}[/red]")
                continue
            if action.skipped is not None:
                console.print(f"{label} [yellow]skipped: {escape(action.skipped)}[/yellow]")
                continue
            if action.status is not None:
                color = {"done": "green", "failed": "red", "scheduled": "blue"}.get(
                    action.status, "yellow"
                )
                console.print(
                    f"{label} [{color}]{action.status}[/{color}]: {escape(action.result or '')}"
                )
                continue
            console.print(label)
            if action.type == "warn" and isinstance(action.params, dict):
                console.print(
                    f"      [bold yellow]warning:[/bold yellow] "
                    f"{escape(_value(action.params.get('message')))}"
                )
                continue
            if isinstance(action.params, dict):
                for key, value in action.params.items():
                    console.print(f"      [dim]{escape(key)}:[/dim] {escape(_value(value))}")
            if action.output and any(v is not None for v in action.output.values()):
                for key, value in action.output.items():
                    console.print(f"      [dim]→ {escape(key)}:[/dim] {escape(_value(value))}")
