"""Trigger kinds: record events, cron schedules, and dates of a record.

Each kind is registered with the properties it accepts in the `trigger` mapping; the one
key that names the kind (`on`, `schedule`, `date`) must be present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from crmflow import durations
from crmflow.cron import Cron, parse_cron
from crmflow.durations import Duration
from crmflow.rules.conditions import Facts
from crmflow.rules.registry import TRIGGERS, TriggerDef
from crmflow.timeutil import DateOutOfRange, localize, parse_temporal
from crmflow.values import display, same

RECORD_EVENTS = ("created", "updated", "saved", "deleted")
EVENT_KINDS = ("created", "updated", "deleted", "tick")
TIME_PATTERN = r"^([01]?\d|2[0-3]):[0-5]\d$"
_ACTOR = {"type": ["integer", "string"]}


@dataclass
class CompiledTrigger:
    """What a workflow reacts to."""

    kind: str
    events: frozenset[str]
    describe: str
    fields: tuple[str, ...] = ()
    ignore_actors: tuple[Any, ...] = ()
    cron: Cron | None = None
    catch_up: str = "once"
    grace: Duration | None = None
    date_field: str = ""
    offset: Duration | None = None
    time: tuple[int, int] | None = None

    def reject(self, facts: Facts) -> str | None:
        """Why this trigger does not fire for the event, or None when it does."""
        if facts.event not in self.events:
            return f"trigger {self.describe}: not a {facts.event} event"
        if self.ignore_actors and facts.chain and "crmflow" in self.ignore_actors:
            return "trigger ignores changes made by crmflow"
        if (
            self.ignore_actors
            and facts.actor is not None
            and any(same(facts.actor, a) or str(facts.actor) == str(a) for a in self.ignore_actors)
        ):
            return f"trigger ignores actor {display(facts.actor)}"
        if self.fields and facts.event == "updated":
            if facts.previous is None:
                return f"trigger fields {', '.join(self.fields)}: event has no previous values"
            record, previous = facts.record, facts.previous
            if not any(not same(previous.get(f), record.get(f)) for f in self.fields):
                return f"trigger fields {', '.join(self.fields)}: none changed"
        return None

    def fire_time(self, facts: Facts, tz: tzinfo) -> datetime | str:
        """For a `date` trigger: when it fires for this record, or why it does not."""
        try:
            return self._fire_time(facts, tz)
        except DateOutOfRange as exc:
            return f"trigger {self.describe}: {exc}"

    def _fire_time(self, facts: Facts, tz: tzinfo) -> datetime | str:
        assert self.offset is not None
        raw = facts.record.get(self.date_field)
        value = parse_temporal(raw) if raw is not None else None
        if value is None:
            what = "is not set" if raw in (None, "") else f"is not a date: {display(raw)}"
            return f"trigger date {self.date_field} {what}"
        if isinstance(value, datetime):
            moment = self.offset.add_to(value, tz)
            if self.time is not None:
                local = moment.astimezone(tz).replace(
                    hour=self.time[0], minute=self.time[1], second=0, microsecond=0, tzinfo=None
                )
                moment = localize(local, tz)
            return moment
        hour, minute = self.time or (0, 0)
        start = localize(datetime(value.year, value.month, value.day, hour, minute), tz)
        return self.offset.add_to(start, tz)


def _events(spec: Any) -> frozenset[str]:
    names = [spec] if isinstance(spec, str) else list(spec)
    events: set[str] = set()
    for name in names:
        events.update(("created", "updated") if name == "saved" else (name,))
    return frozenset(events)


def _compile_on(spec: dict[str, Any], tz: tzinfo) -> CompiledTrigger:
    names = [spec["on"]] if isinstance(spec["on"], str) else list(spec["on"])
    fields = tuple(spec.get("fields") or ())
    describe = f"on {', '.join(names)}"
    return CompiledTrigger(
        "on",
        _events(spec["on"]),
        describe,
        fields=fields,
        ignore_actors=tuple(spec.get("ignore_actors") or ()),
    )


def _compile_schedule(spec: dict[str, Any], tz: tzinfo) -> CompiledTrigger:
    grace = durations.parse(spec["grace"]) if "grace" in spec else None
    return CompiledTrigger(
        "schedule",
        frozenset({"tick"}),
        f"schedule {spec['schedule']!r}",
        cron=parse_cron(spec["schedule"]),
        catch_up=spec.get("catch_up", "once"),
        grace=grace,
    )


def _compile_date(spec: dict[str, Any], tz: tzinfo) -> CompiledTrigger:
    offset = durations.parse(spec.get("offset", "0s"), signed=True)
    time = None
    if "time" in spec:
        hour, minute = spec["time"].split(":")
        time = (int(hour), int(minute))
    describe = f"date {spec['date']}" + (f" {spec['offset']}" if "offset" in spec else "")
    return CompiledTrigger(
        "date",
        frozenset({"created", "updated"}),
        describe,
        date_field=spec["date"],
        offset=offset,
        time=time,
        ignore_actors=tuple(spec.get("ignore_actors") or ()),
    )


_EVENT_SCHEMA = {"type": "string", "enum": list(RECORD_EVENTS)}

TRIGGERS.add(
    "on",
    TriggerDef(
        "on",
        "record events",
        {
            "on": {
                "description": "record events: created, updated, saved (created or updated), "
                "deleted",
                "anyOf": [
                    _EVENT_SCHEMA,
                    {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1, "uniqueItems": True},
                ],
            },
            "fields": {
                "description": "only for updates that change one of these fields",
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
            },
            "ignore_actors": {
                "description": "user ids whose changes do not trigger; `crmflow` for crmflow's own",
                "type": "array",
                "items": _ACTOR,
            },
        },
        _compile_on,
    ),
)

TRIGGERS.add(
    "schedule",
    TriggerDef(
        "schedule",
        "a cron schedule over every record",
        {
            "schedule": {
                "description": "cron expression (minute hour day-of-month month day-of-week), "
                "in the configured time zone",
                "type": "string",
                "minLength": 1,
            },
            "catch_up": {
                "description": "after downtime: run a missed occurrence once, or skip it",
                "enum": ["once", "skip"],
            },
            "grace": {
                "description": "how late a missed occurrence may still run",
                "type": "string",
                "pattern": durations.DURATION_PATTERN,
            },
        },
        _compile_schedule,
    ),
)

TRIGGERS.add(
    "date",
    TriggerDef(
        "date",
        "a date field of each record, plus an offset",
        {
            "date": {
                "description": "the date or date-time field",
                "type": "string",
                "minLength": 1,
            },
            "offset": {
                "description": "signed offset from the date, e.g. 1y or -7d",
                "type": "string",
                "pattern": durations.OFFSET_PATTERN,
            },
            "time": {
                "description": "local time of day (HH:MM) for a date-only field",
                "type": "string",
                "pattern": TIME_PATTERN,
            },
        },
        _compile_date,
    ),
)

# Keys that belong to one kind only (the rest may be shared), for the schema.
OWNED_KEYS = {
    "fields": "on",
    "catch_up": "schedule",
    "grace": "schedule",
    "offset": "date",
    "time": "date",
}


def compile_trigger(spec: dict[str, Any], tz: tzinfo) -> CompiledTrigger:
    for name, definition in TRIGGERS.items():
        if name in spec:
            return definition.compile(spec, tz)
    raise ValueError("trigger names no kind")  # schema validation prevents this
