"""Events: what happened to a record, as `crmflow eval` reads them from JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

from crmflow.errors import EventError, type_name
from crmflow.rules.conditions import Facts, Related
from crmflow.rules.entities import EntityModel, suggest
from crmflow.rules.triggers import EVENT_KINDS
from crmflow.timeutil import format_utc, parse_instant, parse_temporal, to_instant

_KNOWN_KEYS = ("entity", "event", "record", "previous", "actor", "at", "rule", "chain")


@dataclass(slots=True)
class Event:
    entity: str
    event: str
    record: dict[str, Any]
    previous: dict[str, Any] | None = None
    actor: Any = None
    at: datetime | None = None
    # A tick for one schedule workflow only (the daemon's ticks name their workflow).
    rule: str | None = None
    line: int = 0
    # The change version (a hash of the row) when the daemon saw it; keys derive from it.
    version: str | None = None
    # When crmflow's own write caused this change: the (workflow, entity, id) steps so far.
    chain: list[Any] | None = None

    @property
    def id(self) -> Any:
        return self.record.get("id")

    def facts(
        self,
        now: datetime,
        tz: tzinfo,
        related: Related | None = None,
        kept: dict[int, bool] | None = None,
    ) -> Facts:
        """What conditions see of this event at `now`."""
        return Facts(
            self.entity,
            self.event,
            self.record,
            self.previous,
            now,
            tz,
            self.actor,
            related,
            kept=kept,
            chain=self.chain,
        )

    def to_stored(self, at: datetime) -> dict[str, Any]:
        """This event as kept with a pending action (JSON), to rebuild it at fire time."""
        return {
            "entity": self.entity,
            "event": self.event,
            "record": self.record,
            "previous": self.previous,
            "actor": self.actor,
            "at": format_utc(at),
            "version": self.version,
            "chain": self.chain,
        }

    @classmethod
    def from_stored(cls, entity: str, stored: dict[str, Any], record: dict[str, Any]) -> Event:
        """The event kept by `to_stored`, with the record as it is now."""
        return cls(
            entity,
            stored["event"],
            record,
            stored.get("previous"),
            stored.get("actor"),
            at=parse_instant(stored["at"]),
            version=stored.get("version"),
            chain=stored.get("chain"),
        )


def parse_event(data: Any, model: EntityModel | None = None) -> Event:
    """An Event from decoded JSON; EventError names the field that is wrong."""
    if not isinstance(data, dict):
        raise EventError(f"an event is a JSON object, not {type_name(data, json=True)}")
    entity = data.get("entity")
    if not isinstance(entity, str) or not entity:
        raise EventError('entity: missing (a string such as "deal")')
    if model is not None and entity not in model:
        raise EventError(f"entity: unknown entity {entity!r}{suggest(entity, model.names())}")
    kind = data.get("event")
    if kind not in EVENT_KINDS:
        shown = "missing" if kind is None else f"{kind!r} is not valid"
        raise EventError(f"event: {shown} (one of {', '.join(EVENT_KINDS)})")
    record = data.get("record")
    if not isinstance(record, dict):
        raise EventError(f"record: must be an object, not {type_name(record, json=True)}")
    previous = data.get("previous")
    if previous is not None and not isinstance(previous, dict):
        raise EventError(f"previous: must be an object, not {type_name(previous, json=True)}")
    at = None
    if data.get("at") is not None:
        raw = data["at"]
        value = parse_temporal(raw) if isinstance(raw, str) else None
        if value is None:
            raise EventError(f"at: {raw!r} is not an ISO date-time")
        at = to_instant(value, UTC)
    rule = data.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise EventError("rule: must be a workflow id")
    return Event(entity, kind, record, previous, data.get("actor"), at, rule)


def read_events(stream: IO[str], model: EntityModel | None = None) -> Iterator[Event | EventError]:
    """Events from one JSON object or newline-delimited JSON, one at a time.

    Lines are read as they come (constant memory); a line that ends in the middle of a
    JSON value is joined with the next, so a pretty-printed object reads whole. A bad line
    yields an EventError carrying its line number, and the stream goes on.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    start = 0
    line_no = 0
    for line in stream:
        line_no += 1
        if not buffer:
            if not line.strip():
                continue
            start = line_no
        buffer += line
        text = buffer.strip()
        try:
            data = decoder.decode(text)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(text):
                continue  # incomplete: the value goes on in the next line
            if start != line_no:
                # A joined value broke on a later line: report the first, retry the last.
                yield _located(EventError("invalid JSON: unterminated value"), start)
                buffer, start = "", line_no
                retry = line.strip()
                try:
                    data = decoder.decode(retry)
                except json.JSONDecodeError as again:
                    if again.pos >= len(retry):
                        buffer = line
                        continue
                    yield _located(
                        EventError(f"invalid JSON: {again.msg} (column {again.colno})"), line_no
                    )
                    continue
            else:
                buffer = ""
                yield _located(EventError(f"invalid JSON: {exc.msg} (column {exc.colno})"), line_no)
                continue
        buffer = ""
        if isinstance(data, list):
            for item in data:
                yield _event_or_error(item, start, model)
        else:
            yield _event_or_error(data, start, model)
    if buffer.strip():
        yield _located(EventError("invalid JSON: unexpected end of input"), start)


def _event_or_error(data: Any, line_no: int, model: EntityModel | None) -> Event | EventError:
    try:
        event = parse_event(data, model)
    except EventError as exc:
        return _located(exc, line_no)
    event.line = line_no
    return event


def _located(error: EventError, line_no: int) -> EventError:
    error.message = f"line {line_no}: {error.message}"
    error.args = (error.message,)
    return error
