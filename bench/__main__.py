"""`make bench`: run the benchmarks and write bench-results/latest.{json,md}."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from bench import cluster, evaluation, polling, startup


def main() -> None:
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    print("start-up of `crmflow eval --dry-run` (one event) ...", file=sys.stderr)
    start = startup.measure(10)
    print("evaluation throughput against hand-written Python ...", file=sys.stderr)
    evals = evaluation.measure()
    print("idle polls on 1,000 and 1,000,000 rows ...", file=sys.stderr)
    poll = polling.measure()
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    print("daemons on PostgreSQL: 1, 2, 3 daemons; a burst of 10,000 updates ...", file=sys.stderr)
    try:
        pg: dict[str, object] | None = cluster.measure(600, 10_000)
    except RuntimeError as exc:  # no PostgreSQL server binaries here
        print(f"skipped the PostgreSQL figures: {exc}", file=sys.stderr)
        pg = None
    results = {
        "machine": machine,
        "startup": start,
        "evaluation": evals,
        "polling": poll,
        "postgres": pg,
    }
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Machine: {machine}",
        "",
        "| measure | baseline | crmflow | ratio |",
        "|---|---|---|---|",
        f"| start-up, eval of one event (ms, median) | {start['baseline_ms']} "
        f"(import typer, yaml, jinja2, jsonschema) | {start['eval_ms']} | {start['ratio']}x |",
        f"| start-up without the validation cache (ms) | {start['baseline_ms']} | "
        f"{start['no_cache_ms']} | {start['no_cache_ratio']}x |",
    ]
    lines.append(
        f"| idle poll, ms (median of 50) | {poll['small_ms']} (1,000 rows) | {poll['large_ms']} "
        f"(1,000,000 rows) | {poll['ratio']}x |"
    )
    for row in evals:
        lines.append(
            f"| {row['workflows']} workflows, events/s | {row['baseline_eps']:,} (hand-written, "
            f"indexed) | {row['crmflow_eps']:,} | {row['ratio']}x |"
        )
    if pg is not None:
        rates = pg["actions_per_s"]  # type: ignore[index]
        lines.append(
            f"| actions/s, webhooks answering after 50 ms | {rates['1']} (1 daemon) | "
            f"{rates['2']} (2), {rates['3']} (3) | {pg['scaling_3_vs_1']}x |"
        )
        capture = pg["capture"]  # type: ignore[index]
        lines.append(
            f"| burst of {capture['updates']:,} updates: lag of the last | - | "
            f"{capture['lag_last_s']} s ({capture['changes_per_s']} changes/s) | - |"
        )
    table = "\n".join(lines) + "\n"
    (out / "latest.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
