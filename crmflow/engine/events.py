"""Events: what happened to a record, as `crmflow eval` reads them from JSON."""

from __future__ import annotations

import json
import re
import sys
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

from crmflow.errors import EventError, type_name
from crmflow.rules.conditions import Facts, Related
from crmflow.rules.entities import EntityModel, suggest
from crmflow.rules.triggers import EVENT_KINDS
from crmflow.timeutil import format_utc, parse_instant, parse_temporal, to_instant

_AT_MIN = datetime(1, 1, 2, tzinfo=UTC)
_AT_MAX = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
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
        if not _AT_MIN <= at <= _AT_MAX:
            # A day from either end, so its wall clock exists in every time zone.
            raise EventError(f"at: {raw!r} is out of range (0001-01-02 to 9999-12-30)")
    rule = data.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise EventError("rule: must be a workflow id")
    return Event(entity, kind, record, previous, data.get("actor"), at, rule)


def read_events(stream: IO[str], model: EntityModel | None = None) -> Iterator[Event | EventError]:
    """Events from one JSON object, a JSON array or newline-delimited JSON, one at a time.

    Lines are read as they come (constant memory for NDJSON); a line that ends in the
    middle of a JSON value is joined with the next, so a pretty-printed object reads whole,
    and a top-level array yields its events one by one, each with its own line. A bad
    value yields an EventError carrying its line number, and the stream goes on. Nothing
    in the input raises: huge integers, deep nesting, NaN and lone surrogates are errors.
    """
    reader = _Reader(model)
    feed, parts, may_close = reader.feed, reader.parts, _MAY_CLOSE_RE.match
    decode, item = _STRICT.raw_decode, reader._item
    for line in stream:
        if not parts and reader.array is None and line[:1] == "{":
            # The common case, one NDJSON event on its line: decoded once, nothing kept.
            # Anything else (incomplete, broken, surrounded) goes the way `feed` knows.
            stripped = line.rstrip()
            try:
                data, end = decode(stripped)
            except (ValueError, RecursionError):
                pass
            else:
                if end == len(stripped):
                    reader.line_no += 1
                    yield item(data, stripped, reader.line_no)
                    continue
        if parts and may_close(line) is None and reader.size + len(line) < reader.retry_at:
            # Most lines inside a pretty-printed value close nothing: kept, nothing else.
            parts.append(line)
            reader.size += len(line)
            reader.line_no += 1
            continue
        if items := feed(line):
            yield from items
    yield from reader.finish()


# Structural characters outside strings tell when a value spread over lines is complete,
# so a joined value is decoded once it closes, not once per line (linear, not quadratic).
_STRING_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"')
# A line that may end a value: it starts with a closing bracket (after indentation), or
# it is an unindented object, a whole NDJSON event perhaps after a broken one.
_MAY_CLOSE_RE = re.compile(r"[ \t]*[}\]]|\{")
_SPACE_RE = re.compile(r"[ \t\r\n]*")
# A surrogate code point, raw (bytes that were not UTF-8) or escaped: only then are the
# decoded strings searched for one that is not part of a pair.
_SURROGATE_HINT_RE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


# Below this many pending characters a value is decoded again only when it may be whole.
_RETRY_SIZE = 4096


class _Refused(ValueError):
    """A number JSON (RFC 8259) does not have: NaN, Infinity, or one beyond a float."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise _Refused(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is out of range")
    return value


_INF = float("inf")
_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# Finds where a value the strict decoder refused ends, so the stream goes on after it.
_LENIENT = json.JSONDecoder(
    parse_int=lambda _: 0, parse_float=lambda _: 0.0, parse_constant=lambda _: None
)


class _Reader:
    """The state of read_events between lines: the lines of a value not yet complete."""

    def __init__(self, model: EntityModel | None) -> None:
        self.model = model
        self.line_no = 0
        self.parts: list[str] = []  # pending lines, the first of them is line `first`
        self.first = 0
        self.pos = 0  # where the unread text starts in parts[0]
        self.size = 0
        self.retry_at = 0  # the size at which to decode again, a value whole or not
        self.depth = 0  # brackets of the pending text opened minus closed, outside strings
        self.whole_at = 0  # the depth at which a value (or an array's element) is whole
        self.counted = 0  # how many of `parts` `depth` has counted
        self.array: int | None = None  # line of an open top-level array
        self.need_comma = False
        self.need_value = False

    def feed(self, line: str) -> list[Event | EventError]:
        """What one more line completes (mostly nothing, or one event)."""
        self.line_no += 1
        if not self.parts:
            stripped = line.strip()
            if not stripped:
                return []
            if self.array is None and stripped[0] != "[":
                # The common case, one NDJSON line: decoded once, nothing kept.
                try:
                    data, end = _STRICT.raw_decode(stripped)
                except (ValueError, RecursionError):
                    pass  # incomplete or bad: the buffered way says which
                else:
                    if end == len(stripped):
                        return [self._item(data, stripped, self.line_no)]
            # A new value is decoded at once (to open an array), an array's next element
            # when it may be whole.
            retry = 0 if self.array is None else 2 * _RETRY_SIZE
            self.first, self.pos, self.size, self.retry_at = self.line_no, 0, 0, retry
        parts = self.parts
        parts.append(line)
        self.size += len(line)
        # The lines read passes over are counted here, together.
        self.depth += _brackets("".join(parts[self.counted :]))
        self.counted = len(parts)
        # Decode when the value (or the array's element) may have closed, when a line looks
        # like a whole NDJSON event after a broken one, and otherwise each time the text
        # doubles, to find a broken value without waiting for the end.
        ready = self.depth <= self.whole_at or (
            line[0] == "{" and line.rstrip()[-1:] == "}" and _brackets(line) == 0
        )
        if ready or self.size >= self.retry_at:
            out: list[Event | EventError] = []
            self._drain(out, final=False)
            return out
        return []

    def finish(self) -> list[Event | EventError]:
        """What the end of the input completes, or leaves broken."""
        out: list[Event | EventError] = []
        if self.parts:
            self._drain(out, final=True)
        if self.array is not None:
            out.append(_located(EventError("invalid JSON: the array is not closed"), self.array))
            self.array = None
        return out

    def _drain(self, out: list[Event | EventError], *, final: bool) -> None:
        text = "".join(self.parts)
        starts = [0]
        for part in self.parts:
            starts.append(starts[-1] + len(part))
        last = len(text.rstrip())

        def line_of(pos: int) -> int:
            return bisect_right(starts, pos) - 1

        def next_line(pos: int) -> int:
            return starts[min(line_of(pos) + 1, len(self.parts))]

        pos = self.pos
        while True:
            pos = _SPACE_RE.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= len(text):
                break
            char = text[pos]
            if self.array is not None:
                if char == "]" and not self.need_value:
                    self.array, self.need_comma = None, False
                    pos += 1
                    continue
                if self.need_comma:
                    if char == ",":
                        self.need_comma, self.need_value = False, True
                        pos += 1
                        continue
                    column = pos - text.rfind("\n", 0, pos)
                    message = f"invalid JSON: expecting ',' or ']' (column {column})"
                    out.append(_located(EventError(message), self.first + line_of(pos)))
                    self.array, self.need_comma = None, False
                    pos = next_line(pos)
                    continue
            elif char == "[":
                self.array, self.need_value = self.first + line_of(pos), False
                pos += 1
                continue
            start = self.first + line_of(pos)
            try:
                data, end = _STRICT.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if exc.pos >= last and not final:
                    break  # incomplete: the value goes on in the next lines
                if exc.pos >= last:
                    error = EventError("invalid JSON: unexpected end of input")
                    resume = len(text)
                elif self.first + line_of(exc.pos) == start:
                    error = EventError(f"invalid JSON: {exc.msg} (column {exc.colno})")
                    resume = next_line(exc.pos)
                else:
                    # A joined value broke on a later line: report the first, retry the last.
                    error = EventError("invalid JSON: unterminated value")
                    resume = starts[line_of(exc.pos)]
                out.append(_located(error, start))
                self.array, self.need_comma = None, False
                pos = resume
                continue
            except RecursionError:
                out.append(_located(EventError("invalid JSON: nested too deeply"), start))
                self.array, self.need_comma = None, False
                pos = next_line(pos)
                continue
            except ValueError as exc:
                # A number refused: read past the value (if it is whole yet) and go on.
                try:
                    _, end = _LENIENT.raw_decode(text, pos)
                except json.JSONDecodeError as again:
                    if again.pos >= last and not final:
                        break  # incomplete: the value goes on in the next lines
                    end = next_line(pos)
                    self.array = None
                out.append(_located(EventError(f"invalid JSON: {_number_problem(exc)}"), start))
                pos = end
                self.need_comma, self.need_value = self.array is not None, False
                continue
            out.append(self._item(data, text[pos:end], start))
            pos = end
            self.need_comma, self.need_value = self.array is not None, False
        # Keep only the lines from the one where reading stopped.
        keep = min(line_of(pos), len(self.parts) - 1) if pos < len(text) else len(self.parts)
        del self.parts[:keep]
        self.first += keep
        self.pos = pos - starts[keep] if self.parts else 0
        self.size = len(text) - starts[keep]
        self.retry_at = 2 * max(self.size, _RETRY_SIZE)
        self.whole_at = 0 if self.array is None else 1
        # What was read of the first line is whole values: count what is left of it.
        self.depth = self.whole_at + _brackets(text[pos:])
        self.counted = len(self.parts)

    def _item(self, data: Any, text: str, line_no: int) -> Event | EventError:
        if _may_hold_surrogate(text) and _holds_lone_surrogate(data):
            return _located(
                EventError("invalid JSON: a string holds a lone surrogate or bytes not UTF-8"),
                line_no,
            )
        return _event_or_error(data, line_no, self.model)


def _may_hold_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point, raw or escaped (a quick look first).

    Text that UTF-8 encodes holds no raw one, and an escaped one starts with `\\u`: most
    events have neither, and both looks run in C without a regex's step per character.
    """
    if "\\u" in text and _SURROGATE_HINT_RE.search(text):
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _brackets(line: str) -> int:
    """Brackets a line opens minus those it closes, outside strings."""
    if '"' in line:
        line = _STRING_RE.sub("", line)
    return line.count("{") + line.count("[") - line.count("}") - line.count("]")


def _number_problem(exc: ValueError) -> str:
    if isinstance(exc, _Refused):
        return str(exc)
    return f"a number with more than {sys.get_int_max_str_digits()} digits"


def _holds_lone_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE_RE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


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
