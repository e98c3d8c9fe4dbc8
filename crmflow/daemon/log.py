"""The daemon's live output: one line per event or action, for people or for log shippers.

`plain` lines carry a UTC timestamp and read well in journald; `json` writes one object
per line; `rich` (the default on a terminal) adds colour.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from crmflow.timeutil import format_utc
from crmflow.values import printable


class Log:
    def __init__(
        self, fmt: str = "plain", stream: IO[str] | None = None, quiet_unmatched: bool = True
    ) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self.quiet_unmatched = quiet_unmatched
        self._console: Any = None
        if fmt == "rich":
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def _emit(self, kind: str, text: str, **fields: Any) -> None:
        now = datetime.now(UTC)
        # Lines carry CRM data (names, ids): no escape sequence reaches a terminal or a
        # log viewer, and no line break forges a log line.
        text = printable(text).replace("\n", "\\n")
        if self.fmt == "json":
            self.stream.write(
                json.dumps(
                    {"at": format_utc(now), "kind": kind, "message": text, **fields}, default=str
                )
                + "\n"
            )
        elif self._console is not None:
            from rich.markup import escape

            colour = {"warn": "yellow", "fault": "red", "event": "cyan", "action": "green"}.get(
                kind, "dim"
            )
            self._console.print(
                f"[dim]{now:%H:%M:%S}[/dim] [{colour}]{kind:6}[/{colour}] {escape(text)}"
            )
        else:
            self.stream.write(f"{format_utc(now)} {kind:6} {text}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self._emit("note", text)

    def warn(self, text: str) -> None:
        self._emit("warn", text)

    def fault(self, text: str) -> None:
        """The world failing (a database, the disk, the network): the daemon retries."""
        self._emit("fault", text)

    def action(self, workflow: str, action: str, text: str) -> None:
        self._emit("action", f"{workflow}: {action} {text}", workflow=workflow, action=action)

    def plan(self, plan: Any) -> None:
        event = plan.event
        matched = [r for r in plan.rules if r.matched]
        if not matched and self.quiet_unmatched:
            return
        names = ", ".join(r.rule for r in matched) or "no workflow"
        self._emit(
            "event",
            f"{event.entity} {event.id} {event.event}: {names}",
            entity=event.entity,
            record_id=event.id,
            event=event.event,
            matched=[r.rule for r in matched],
        )
        for rule in matched:
            for action in rule.actions:
                status = action.status or "planned"
                self.action(rule.rule, action.type, f"{status}: {action.result or ''}".rstrip())
