"""Reading events: NDJSON, pretty-printed objects, and bad lines that do not stop the stream."""

from __future__ import annotations

import io

import pytest

from crmflow.engine.events import Event, parse_event, read_events
from crmflow.errors import EventError
from crmflow.rules.entities import builtin_model


def read(text: str) -> list[Event | EventError]:
    return list(read_events(io.StringIO(text), builtin_model()))


def test_ndjson_with_a_bad_line_in_the_middle() -> None:
    text = (
        '{"entity":"deal","event":"created","record":{"id":1}}\n'
        "{not json}\n"
        "\n"
        '{"entity":"deal","event":"created","record":{"id":3}}\n'
    )
    items = read(text)
    assert [type(i).__name__ for i in items] == ["Event", "EventError", "Event"]
    assert str(items[1]).startswith("line 2: invalid JSON")
    assert isinstance(items[2], Event) and items[2].line == 4


def test_a_pretty_printed_object() -> None:
    items = read('{\n  "entity": "deal",\n  "event": "created",\n  "record": {"id": 1}\n}\n')
    assert len(items) == 1 and isinstance(items[0], Event)


def test_a_truncated_last_line() -> None:
    items = read('{"entity":"deal","event":"created","record":{"id":1}}\n{"entity":"deal"')
    assert isinstance(items[0], Event)
    assert str(items[1]) == "line 2: invalid JSON: unexpected end of input"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "an event is a JSON object, not an array"),
        ({"event": "created", "record": {}}, "entity: missing"),
        (
            {"entity": "dael", "event": "created", "record": {}},
            "entity: unknown entity 'dael' (did you mean 'deal'?)",
        ),
        ({"entity": "deal", "event": "saved", "record": {}}, "event: 'saved' is not valid"),
        ({"entity": "deal", "event": "created"}, "record: must be an object, not null"),
        (
            {"entity": "deal", "event": "updated", "record": {}, "previous": [1]},
            "previous: must be an object, not an array",
        ),
        (
            {"entity": "deal", "event": "created", "record": {}, "at": "yesterday"},
            "at: 'yesterday' is not an ISO date-time",
        ),
    ],
)
def test_invalid_events_name_the_field(data: object, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(data, builtin_model())
    assert str(info.value).startswith(message)


def test_at_without_offset_is_utc() -> None:
    event = parse_event(
        {"entity": "deal", "event": "created", "record": {}, "at": "2026-11-22 10:00:00"}
    )
    assert event.at is not None and event.at.isoformat() == "2026-11-22T10:00:00+00:00"


def test_a_pretty_printed_array_gives_each_event_its_own_line() -> None:
    items = read(
        '[\n  {"entity": "deal", "event": "created", "record": {"id": 1}},\n  {\n'
        '    "entity": "deal", "event": "created", "record": {"id": 2}\n  }\n]\n'
    )
    assert [(type(i).__name__, getattr(i, "line", None)) for i in items] == [
        ("Event", 2),
        ("Event", 3),
    ]


def test_a_broken_line_before_whole_ones_is_reported_once() -> None:
    items = read(
        '{"entity":"deal"\n'
        '{"entity":"deal","event":"created","record":{"id":2}}\n'
        '{"entity":"deal","event":"created","record":{"id":3}}\n'
    )
    assert str(items[0]) == "line 1: invalid JSON: unterminated value"
    assert [i.line for i in items[1:] if isinstance(i, Event)] == [2, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"x": NaN}', "line 1: invalid JSON: NaN is not a JSON number"),
        ('{"x": 1e400}', "line 1: invalid JSON: the number 1e400 is out of range"),
        ('{"x": ' + "9" * 5000 + "}", "line 1: invalid JSON: a number with more than"),
        ("[" * 50_000, "line 1: invalid JSON: nested too deeply"),
        ('{"x": "\\udc00"}', "line 1: invalid JSON: a string holds a lone surrogate"),
    ],
)
def test_json_that_python_takes_but_events_refuse(text: str, message: str) -> None:
    items = read(text + '\n{"entity":"deal","event":"created","record":{"id":2}}\n')
    assert str(items[0]).startswith(message)
    assert isinstance(items[-1], Event) and items[-1].line == 2


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2026-11-22T10:00+99:00", "is not an ISO date-time"),
        ("9999-12-31T23:00Z", "is out of range"),
        ("0001-01-01", "is out of range"),
    ],
)
def test_at_out_of_range(at: str, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event({"entity": "deal", "event": "created", "record": {}, "at": at})
