"""`crmflow eval` against hostile events (SPEC §9): one line per bad event, never a crash.

Each case runs the real command with its memory capped and a timeout; a good event after
the bad one must still get its plan, and stdout must stay strict JSON.
"""

from __future__ import annotations

import gc
import io
import json
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmflow.engine.events import Event, read_events
from crmflow.errors import EventError
from crmflow.rules.entities import builtin_model
from tests.conftest import crmflow_bin

Rules = Callable[..., Path]

WORKFLOWS = {
    "delayed.yaml": """
        id: delayed
        entity: deal
        trigger: {on: [created]}
        actions:
          - warn: {message: "later"}
            delay: 30d
        """,
    "before-due.yaml": """
        id: before-due
        entity: task
        trigger: {date: due_date, offset: -7d}
        actions:
          - warn: {message: "due soon"}
        """,
}
GOOD = '{"entity": "deal", "event": "created", "record": {"id": 99}, "at": "2026-11-22T10:00Z"}'
MEMORY = 1024 * 1024 * 1024


def _deal(text: str) -> str:
    """An event line with `text` as the value of the record's field `x`."""
    return '{"entity": "deal", "event": "created", "record": {"id": 1, "x": ' + text + "}}"


CASES = {
    "huge-integer": _deal("1" * 5000),
    "deep-nesting": _deal("[" * 100_000 + "]" * 100_000),
    "lone-surrogate": _deal('"\\ud800"'),
    "nan": _deal("NaN"),
    "infinity": _deal("-Infinity"),
    "float-overflow": _deal("1e999"),
    "at-end-of-time": '{"entity": "deal", "event": "created", "record": {"id": 1}, '
    '"at": "9999-12-31T23:00Z"}',
    "offset-99-hours": '{"entity": "deal", "event": "created", "record": {"id": 1}, '
    '"at": "2026-11-22T10:00+99:00"}',
    "not-utf8": _deal('"\xff\xfe"'),
}


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _eval(cwd: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [crmflow_bin(), "eval", "--dry-run", "--format", "json"],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=60,
        preexec_fn=_cap_memory,
    )


def _refuse(name: str) -> Any:
    raise AssertionError(f"{name} in the output is not JSON")


@pytest.mark.parametrize("bad", list(CASES.values()), ids=list(CASES))
def test_a_hostile_event_is_one_line_and_the_stream_goes_on(
    bad: str, rules_dir: Rules, tmp_path: Path
) -> None:
    rules_dir(WORKFLOWS)
    stdin = f"{GOOD}\n{bad}\n{GOOD}\n".encode("utf-8", "surrogateescape")
    if "\xff" in bad:
        stdin = stdin.replace("\xff\xfe".encode(), b"\xff\xfe")
    result = _eval(tmp_path, stdin)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.splitlines() == [err.strip()] and err.startswith("crmflow: line 2: "), err
    plans = [json.loads(line, parse_constant=_refuse) for line in result.stdout.splitlines()]
    assert [p["event"]["id"] for p in plans] == [99, 99]


# Valid events whose dates run off the calendar once a workflow moves them: only the
# action (a delay past year 9999) or the workflow (a date trigger before year 1) fails.
OFF_THE_CALENDAR = {
    "delay-past-9999": (
        '{"entity": "deal", "event": "created", "record": {"id": 1}, "at": "9999-12-20T00:00Z"}',
        "delayed",
    ),
    "date-before-year-1": (
        '{"entity": "task", "event": "created", '
        '"record": {"id": 1, "due_date": "0001-01-02"}, "at": "0001-01-02T00:00Z"}',
        "before-due",
    ),
}


@pytest.mark.parametrize("case", list(OFF_THE_CALENDAR.values()), ids=list(OFF_THE_CALENDAR))
def test_a_date_off_the_calendar_fails_only_what_it_moves(
    case: tuple[str, str], rules_dir: Rules, tmp_path: Path
) -> None:
    event, workflow = case
    rules_dir(WORKFLOWS)
    result = _eval(tmp_path, f"{GOOD}\n{event}\n{GOOD}\n".encode())
    assert result.returncode == 0, result.stderr.decode()
    plans = [json.loads(line, parse_constant=_refuse) for line in result.stdout.splitlines()]
    assert len(plans) == 3
    rule = next(r for r in plans[1]["rules"] if r["rule"] == workflow)
    said = json.dumps(rule)
    assert "out of range" in said, said


def test_a_pretty_printed_array_names_each_bad_event(rules_dir: Rules, tmp_path: Path) -> None:
    rules_dir(WORKFLOWS)
    events: list[Any] = [json.loads(GOOD), {"entity": "deal"}, json.loads(GOOD)]
    text = json.dumps(events, indent=2).replace(
        '"entity": "deal"\n', '"entity": "deal", "x": NaN\n'
    )
    result = _eval(tmp_path, text.encode())
    assert result.returncode == 2
    bad_line = 10  # the second event's "{"
    assert result.stderr.decode().splitlines() == [
        f"crmflow: line {bad_line}: invalid JSON: NaN is not a JSON number"
    ]
    assert len(result.stdout.splitlines()) == 2


def test_files_in_the_hostile_folder(rules_dir: Rules, tmp_path: Path) -> None:
    """Inputs kept as files (tests/hostile/events/*.ndjson): each line after the first bad."""
    rules_dir(WORKFLOWS)
    folder = Path(__file__).parent / "hostile" / "events"
    for path in sorted(folder.glob("*.ndjson")):
        result = _eval(tmp_path, path.read_bytes())
        assert result.returncode == 2, path.name
        assert all(
            line.startswith("crmflow: line ") for line in result.stderr.decode().splitlines()
        )
        for line in result.stdout.splitlines():
            json.loads(line, parse_constant=_refuse)


def _ratio(text: str) -> float:
    """How much longer read_events takes than json.loads over the same text (CPU, best of 5)."""
    model = builtin_model()
    best_json = best_read = float("inf")
    gc.disable()  # the collector's pauses land on either side at random
    try:
        for _ in range(5):
            start = time.process_time()
            json.loads(text)
            best_json = min(best_json, time.process_time() - start)
            start = time.process_time()
            items = list(read_events(io.StringIO(text), model))
            best_read = min(best_read, time.process_time() - start)
    finally:
        gc.enable()
    assert len(items) == text.count('"entity"')
    assert all(isinstance(item, Event) for item in items)
    return best_read / best_json


def test_a_pretty_printed_array_reads_in_linear_time() -> None:
    event = {
        "entity": "deal",
        "event": "updated",
        "record": {"id": 1, "name": "ACME", "amount": 250000.5, "tags": ["a", "b"]},
        "previous": {"id": 1, "name": "ACME", "amount": 90000, "tags": []},
        "at": "2026-11-22T10:00:00Z",
    }
    text = json.dumps([event] * 8000, indent=2)
    assert len(text) > 1_000_000
    assert _ratio(text) < 20


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["deal", "created", "updated", "2026-11-22T10:00Z", "9999-12-31"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["entity", "event", "record", "previous", "at", "rule", "x"])
            | st.text(),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)


def _read(text: str) -> list[Event | EventError]:
    items = list(read_events(io.StringIO(text), builtin_model()))
    assert all(isinstance(item, (Event, EventError)) for item in items)
    for item in items:
        if isinstance(item, EventError):
            assert "\n" not in str(item) and str(item).startswith("line ")
    return items


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_only_yield_events_or_errors(data: bytes) -> None:
    _read(data.decode("utf-8", "surrogateescape"))


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=4), st.sampled_from([None, 2]), st.booleans())
def test_random_json_only_yields_events_or_errors(
    values: list[Any], indent: int | None, as_array: bool
) -> None:
    texts = [json.dumps(values, indent=indent)] if as_array else [json.dumps(v) for v in values]
    _read("\n".join(texts))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                '{"entity":',
                '"deal"',
                "[",
                "]",
                "{",
                "}",
                ",",
                "\n",
                "NaN",
                '"\\ud800"',
                "1" * 5000,
                " ",
            ]
        ),
        max_size=30,
    )
)
def test_random_fragments_only_yield_events_or_errors(pieces: list[str]) -> None:
    _read("".join(pieces))
