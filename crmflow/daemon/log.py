"""The daemon's live output: one line per event or action, for people or for log shippers.

Lines go to stderr (standard output stays for what a command prints as its answer).
`plain` lines carry a UTC timestamp, except under journald (`$JOURNAL_STREAM`), which
stamps them itself and reads the `<N>` priority prefix, so `journalctl -p err` finds
faults and failed actions; `json` writes one object per line with `level`, `event`,
`workflow`, `entity`, `record`, `action`, `outcome`, `key` and `error` where they apply;
`rich` (the default on a terminal) adds colour.

An observer (the daemon's metrics) sees every change judged and every action's outcome
as the log does, so metrics and log never disagree.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from crmflow.timeutil import format_utc
from crmflow.values import printable

# The outcomes an action's line may start with ("done: ...", "failed: ...").
OUTCOMES = frozenset(
    {
        "done",
        "failed",
        "skipped",
        "cancelled",
        "scheduled",
        "planned",
        "retried",
        "waiting",
        "queued",
        "dropped",
        "released",
    }
)
_LEVELS = {"note": "info", "event": "info", "action": "info", "warn": "warning", "fault": "error"}
# What a JSON line's `event` says: a change judged is a "change".
_EVENTS = {"event": "change"}
# syslog priorities journald reads from a `<N>` prefix.
_PRIORITY = {"info": 6, "warning": 4, "error": 3}


class Observer(Protocol):
    def plan(self, plan: Any) -> None: ...

    def action(self, action_type: str, outcome: str) -> None: ...

    def fault(self) -> None: ...

    def late(self) -> None: ...


def outcome_of(text: str) -> str | None:
    word = text.split(":", 1)[0].strip()
    return word if word in OUTCOMES else None


class Log:
    def __init__(
        self,
        fmt: str = "plain",
        stream: IO[str] | None = None,
        quiet_unmatched: bool = True,
        observer: Observer | None = None,
    ) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.quiet_unmatched = quiet_unmatched
        self.observer = observer
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))
        self._console: Any = None
        if fmt == "rich":
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def _emit(self, kind: str, text: str, level: str | None = None, **fields: Any) -> None:
        now = datetime.now(UTC)
        level = level or _LEVELS.get(kind, "info")
        # Lines carry CRM data (names, ids): no escape sequence reaches a terminal or a
        # log viewer, and no line break forges a log line.
        text = printable(text).replace("\n", "\\n")
        if self.fmt == "json":
            record = {"at": format_utc(now), "level": level, "event": _EVENTS.get(kind, kind)}
            record.update((k, v) for k, v in fields.items() if v is not None)
            record["message"] = text
            self.stream.write(json.dumps(record, default=str) + "\n")
        elif self._console is not None:
            from rich.markup import escape

            colour = {"warn": "yellow", "fault": "red", "event": "cyan", "action": "green"}.get(
                kind, "dim"
            )
            if level == "error":
                colour = "red"
            self._console.print(
                f"[dim]{now:%H:%M:%S}[/dim] [{colour}]{kind:6}[/{colour}] {escape(text)}"
            )
        elif self.journal:
            self.stream.write(f"<{_PRIORITY[level]}>{kind:6} {text}\n")
        else:
            self.stream.write(f"{format_utc(now)} {kind:6} {text}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self._emit("note", text)

    def warn(self, text: str) -> None:
        self._emit("warn", text)

    def fault(self, text: str) -> None:
        """The world failing (a database, the disk, the network): the daemon retries."""
        if self.observer is not None:
            self.observer.fault()
        self._emit("fault", text, error=text)

    def late(self, text: str) -> None:
        """A change the reconciliation sweep found that polls had missed."""
        if self.observer is not None:
            self.observer.late()
        self._emit("warn", text, event="found_late")

    def action(
        self,
        workflow: str,
        action: str,
        text: str,
        *,
        entity: str | None = None,
        record: Any = None,
        key: str | None = None,
    ) -> None:
        outcome = outcome_of(text)
        if self.observer is not None and outcome is not None:
            self.observer.action(action, outcome)
        failed = outcome == "failed"
        self._emit(
            "action",
            f"{workflow}: {action} {text}",
            "error" if failed else None,
            workflow=workflow,
            action=action,
            outcome=outcome,
            entity=entity,
            record=record,
            key=key,
            error=text.split(":", 1)[1].strip() if failed and ":" in text else None,
        )

    def plan(self, plan: Any) -> None:
        if self.observer is not None:
            self.observer.plan(plan)
        event = plan.event
        matched = [r for r in plan.rules if r.matched]
        if not matched and self.quiet_unmatched:
            return
        names = ", ".join(r.rule for r in matched) or "no workflow"
        self._emit(
            "event",
            f"{event.entity} {event.id} {event.event}: {names}",
            entity=event.entity,
            record=event.id,
            change=event.event,
            matched=[r.rule for r in matched],
        )
        for rule in matched:
            if rule.set_aside is not None:
                # Its mode dropped or queued the whole run (engine/modes.py): one line.
                self.action(
                    rule.rule,
                    "run",
                    f"{rule.set_aside_as}: {rule.set_aside}",
                    entity=event.entity,
                    record=event.id,
                )
                continue
            for action in rule.actions:
                status = action.status or "planned"
                self.action(
                    rule.rule,
                    action.type,
                    f"{status}: {action.result or ''}".rstrip(),
                    entity=event.entity,
                    record=event.id,
                    key=action.key,
                )
