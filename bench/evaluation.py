"""Deciding what an event triggers: crmflow, hand-written Python and four peer engines.

The workload (bench.workload) at 10, 100 and 1,000 workflows. The baseline is the same
conditions as hand-written Python lambdas indexed by (entity, event). Every engine must
find the same (event, workflow) pairs, or the benchmark fails. crmflow and the baseline
run the whole stream (best of five, in turns); the peers, up to 100x slower, a prefix of it
sized so that each takes a few seconds.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import shapes, workload
from bench.engines import PEERS, Run, crmflow_engine, crmflow_raw_engine, hand_engine
from crmflow.engine.events import Event

# Events a peer evaluates at a given size: about 2 million (event, workflow) checks.
PEER_CHECKS = 2_000_000


def measure(
    sizes: tuple[int, ...] = (10, 100, 1000), n_events: int = 20_000, peers: bool = True
) -> list[dict[str, Any]]:
    rows = []
    stream = workload.events(n_events)
    flats = [workload.flat(e) for e in stream]
    for size in sizes:
        ruleset = workload.rules(size)
        hand, ours = hand_engine(ruleset), crmflow_engine(ruleset)
        expected = hand(stream, flats)
        _agree("crmflow", size, expected, ours(stream, flats))
        hand_s, ours_s = _best_alternating(hand, ours, stream, flats)
        row: dict[str, Any] = {
            "workflows": size,
            "events": n_events,
            "matches": sum(len(m) for m in expected),
            "baseline_eps": round(n_events / hand_s),
            "crmflow_eps": round(n_events / ours_s),
            "ratio": round(hand_s / ours_s, 2),
            "peers": {},
        }
        if peers:
            count = min(n_events, max(500, PEER_CHECKS // size))
            for name, build in PEERS.items():
                print(f"  {size} workflows: {name} on {count:,} events", file=sys.stderr)
                run: Run = build(ruleset)
                started = time.perf_counter()
                got = run(stream[:count], flats[:count])
                seconds = time.perf_counter() - started
                _agree(name, size, expected[:count], got)
                eps = count / seconds
                row["peers"][name] = {
                    "events": count,
                    "eps": round(eps),
                    "vs_baseline": round(eps / row["baseline_eps"], 3),
                }
            fastest = max(p["eps"] for p in row["peers"].values())
            row["vs_fastest_peer"] = round(row["crmflow_eps"] / fastest, 1)
        rows.append(row)
    return rows


def _agree(engine: str, size: int, expected: list[list[str]], got: list[list[str]]) -> None:
    if expected == got:
        return
    bad = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
    raise AssertionError(
        f"{size} workflows: {engine} matched {got[bad]} for event {bad}, "
        f"the hand-written baseline {expected[bad]}"
    )


def _best_alternating(
    a: Run, b: Run, stream: list[Event], flats: list[dict[str, Any]], repeats: int = 5
) -> tuple[float, float]:
    """Best times of `a` and `b`, run in turns so that both see the same machine."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for slot, run in enumerate((a, b)):
            started = time.perf_counter()
            run(stream, flats)
            best[slot] = min(best[slot], time.perf_counter() - started)
    return best[0], best[1]


def measure_shapes(
    sizes: tuple[int, ...] = (10, 100, 1000), n_events: int = 20_000, repeats: int = 5
) -> list[dict[str, Any]]:
    """Every workload of bench.shapes, records with datetimes and with ISO strings.

    The library API from raw events (`Evaluator.matching_raw` on the decoded mappings,
    no `Event` built) against hand-written lambdas over the same mappings; the medians
    of `repeats` runs taken in turns.
    """
    rows = []
    for shape in shapes.SHAPES.values():
        iso_stream = shape.events(n_events, 31)
        variants = {
            "datetime": shapes.with_datetimes(iso_stream, shapes.DATE_FIELDS),
            "iso": iso_stream,
        }
        for size in sizes:
            flows = shape.flows(size, 17)
            ours = crmflow_raw_engine(shapes.documents(flows))
            for variant, stream in variants.items():
                hand = shapes.hand_engine(flows, iso=variant == "iso")
                expected = hand(stream)
                _agree(f"crmflow ({shape.name}, {variant})", size, expected, ours(stream))
                hand_s, ours_s = _median_alternating(hand, ours, stream, repeats)
                rows.append(
                    {
                        "workload": shape.name,
                        "values": variant,
                        "workflows": size,
                        "events": n_events,
                        "matches": sum(len(m) for m in expected),
                        "empty": sum(1 for d in stream if not ours.bucket(d)),
                        "baseline_eps": round(n_events / hand_s),
                        "crmflow_eps": round(n_events / ours_s),
                        "ratio": round(hand_s / ours_s, 2),
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def _median_alternating(
    a: Callable[[Any], Any], b: Callable[[Any], Any], stream: Any, repeats: int
) -> tuple[float, float]:
    """Median times of `a` and `b`, run in turns so that both see the same machine."""
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for slot, run in enumerate((a, b)):
            started = time.perf_counter()
            run(stream)
            times[slot].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


if __name__ == "__main__":
    for result in measure(peers="--peers" in sys.argv):
        print(result)
    for result in measure_shapes():
        print(result)
