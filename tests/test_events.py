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
