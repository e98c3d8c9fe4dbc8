"""Deciding what an event triggers: crmflow, hand-written Python and four peer engines.

The workload (bench.workload) at 10, 100 and 1,000 workflows. The baseline is the same
conditions as hand-written Python lambdas indexed by (entity, event). Every engine must
find the same (event, workflow) pairs, or the benchmark fails. crmflow and the baseline
run the whole stream (best of five, in turns); the peers, up to 100x slower, a prefix of it
sized so that each takes a few seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench import workload
from bench.engines import PEERS, Run, crmflow_engine, hand_engine
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


if __name__ == "__main__":
    for result in measure():
        print(result)
