"""`make bench`: run every benchmark, write bench-results/latest.{json,md} and the README table.

Each figure is a ratio against a baseline measured in the same run, with the absolute
numbers beside it. `python -m bench` runs it all (about 8 minutes on 2 cores);
the modules also run one by one (`python -m bench.evaluation`, ...).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench import cluster, commandline, daemon, evaluation, loading, polling, startup

ROOT = Path(__file__).resolve().parent.parent
README_BLOCK = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)


def _step(title: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {title} ...", file=sys.stderr, flush=True)


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine()}
    _step("start-up of `crmflow eval --dry-run` (one event)")
    results["startup"] = startup.measure(10)
    _step("evaluation: crmflow, hand-written Python and four peers at 10/100/1,000 workflows")
    results["evaluation"] = evaluation.measure()
    _step("evaluation on other workloads: mixed, spread, sparse; datetimes and ISO strings")
    results["workloads"] = evaluation.measure_shapes()
    _step("command line: 100,000 events through `crmflow eval`, lint of 1,000 files")
    results["commandline"] = commandline.measure()
    _step("loading: lint of a 2 MB file, memory at 2 and 10 MB, 1,000 workflows")
    results["loading"] = loading.measure()
    _step("idle polls on 1,000 and 1,000,000 rows")
    results["polling"] = polling.measure()
    _step("reconciliation sweep over 1,000,000 rows")
    results["sweep"] = polling.measure_sweep()
    _step("daemon on SQLite: a burst of 10,000 changes, 100,000 pending actions")
    results["daemon"] = daemon.measure()
    _step("daemons on PostgreSQL: 1, 2, 3 daemons; a burst of 10,000 updates")
    try:
        # As many changes as the SQLite burst: with 2,000, the wait for the next poll (up
        # to the poll interval) is half of what is measured.
        results["postgres"] = cluster.measure(600, 10_000)
    except RuntimeError as exc:  # no PostgreSQL server binaries here
        print(f"skipped the PostgreSQL figures: {exc}", file=sys.stderr)
        results["postgres"] = None
    return results


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()}"
    )


def table(r: dict[str, Any]) -> str:
    rows = ["| measure | baseline | crmflow | ratio |", "|---|---|---|---|"]

    def add(measure: str, base: str, ours: str, ratio: str) -> None:
        rows.append(f"| {measure} | {base} | {ours} | {ratio} |")

    for e in r["evaluation"]:
        add(
            f"{e['workflows']:,} workflows: events/s, library API",
            f"{e['baseline_eps']:,} (hand-written lambdas, indexed)",
            f"{e['crmflow_eps']:,}",
            f"**{e['ratio']}x**",
        )
        peers = ", ".join(
            f"{name} {p['eps']:,} ({p['vs_baseline']}x)" for name, p in e["peers"].items()
        )
        add(
            f"{e['workflows']:,} workflows: peers, events/s (vs hand-written)",
            peers,
            f"{e['crmflow_eps']:,}",
            f"{e['vs_fastest_peer']}x the fastest peer",
        )
    for e in r.get("workloads", []):
        add(
            f"{e['workflows']:,} workflows, `{e['workload']}` workload, {e['values']} values: "
            "events/s, library API from raw events",
            f"{e['baseline_eps']:,} (hand-written lambdas, indexed)",
            f"{e['crmflow_eps']:,}",
            f"**{e['ratio']}x**",
        )
    s = r["commandline"]["stream"]
    big, small = s["100000"], s["10000"]
    add(
        f"`crmflow eval --dry-run --format json`, 100,000 events, {s['workflows']} workflows: "
        "events/s",
        f"{big['baseline_eps']:,} (json.loads + json.dumps per line)",
        f"{big['eps']:,}",
        f"{s['vs_json_filter']}x",
    )
    add(
        "same: peak memory, 10,000 vs 100,000 events (KiB)",
        f"{small['peak_kib']:,}",
        f"{big['peak_kib']:,}",
        f"{s['memory_ratio']}x",
    )
    st = r["startup"]
    add(
        "start-up: eval of one event over `rules/` (ms, median of 10)",
        f"{st['baseline_ms']} (`import typer, yaml, jinja2, jsonschema`)",
        f"{st['eval_ms']}",
        f"{st['ratio']}x",
    )
    add(
        "start-up without the validation cache (ms)",
        f"{st['baseline_ms']}",
        f"{st['no_cache_ms']}",
        f"{st['no_cache_ratio']}x",
    )
    lint = r["commandline"]["lint"]
    add(
        f"`crmflow lint` of {lint['files']:,} files, no cache (s, best of 3)",
        f"{lint['baseline_s']} (PyYAML CSafeLoader)",
        f"{lint['lint_s']}",
        f"{lint['ratio']}x",
    )
    ld = r["loading"]
    f = ld["lint_file"]
    add(
        f"`crmflow lint` of one {f['bytes'] / 1e6:.1f} MB file, {f['workflows']:,} workflows (s):"
        " no cache / empty cache / filled cache",
        f"{f['baseline_s']} (PyYAML CSafeLoader, load_all)",
        f"{f['no_cache_s']} / {f['cold_cache_s']} / {f['warm_cache_s']}",
        f"{f['ratio']}x",
    )
    m = ld["memory"]
    add(
        "loaded YAML, 2 MB vs 10 MB file: memory kept (MB, and bytes per file byte)",
        f"{m['2mb']['held_mb']} ({m['2mb']['held_per_byte']}/byte)",
        f"{m['10mb']['held_mb']} ({m['10mb']['held_per_byte']}/byte)",
        f"{m['held_ratio']}x for {m['size_ratio']}x the size",
    )
    add(
        "same: peak RSS of `crmflow lint` (MB)",
        f"{m['2mb']['lint_peak_rss_mb']}",
        f"{m['10mb']['lint_peak_rss_mb']}",
        f"{m['rss_ratio']}x",
    )
    lo = ld["load"]
    add(
        f"`load_ruleset` of {lo['workflows']:,} workflow files, no cache: s; compiled rules (MB)",
        "goal 0.5 s; 5 MB",
        f"{lo['seconds']} s; {lo['compiled_mb']} MB",
        f"{round(lo['seconds'] / 0.5, 2)}x; {round(lo['compiled_mb'] / 5, 2)}x of the goals",
    )
    p = r["polling"]
    add(
        f"idle poll (ms, median of {p['polls']})",
        f"{p['small_ms']} (1,000 rows)",
        f"{p['large_ms']} (1,000,000 rows)",
        f"{p['ratio']}x",
    )
    w = r["sweep"]
    add(
        "reconciliation sweep, 1,000,000 rows (s; rows/s)",
        f"{w['sweep_s']} s",
        f"{w['sweep_rows_per_s']:,} rows/s",
        f"baseline {w['baseline_s']} s",
    )
    b = r["daemon"]["burst"]
    add(
        f"SQLite: burst of {b['changes']:,} changed deals to their inbox rows",
        f"committed code: {b.get('before_records_per_s', '?')} records/s",
        f"first after {b.get('lag_first_s', '?')} s, last after {b['lag_last_s']} s "
        f"({b['records_per_s']} records/s)",
        f"{b.get('ratio', '-')}x (poll interval {b['poll_interval_s']} s)",
    )
    q = r["daemon"]["pending"]
    add(
        f"SQLite: {q['pending']:,} pending actions: start-up to first tick (s), peak RSS (KiB)",
        "-",
        f"{q['startup_s']} s, {q['peak_rss_kib']:,} KiB",
        "-",
    )
    add(
        f"same: lateness of {q['fired']:,} due actions, p50 / p99 / max (s)",
        f"goal p99 <= {q['poll_interval_s'] + 1} s (poll interval + 1 s)",
        f"{q['late_p50_s']} / {q['late_p99_s']} / {q['late_max_s']}",
        f"{round(q['late_p99_s'] / (q['poll_interval_s'] + 1), 2)}x of the goal",
    )
    h = r["daemon"].get("webhooks")
    if h:
        add(
            f"SQLite: {h['actions']} delayed webhooks due at once, receiver answering after "
            f"{h['receiver_delay_ms']} ms (actions/s)",
            f"committed code: {h.get('before_actions_per_s', '?')}",
            f"{h['actions_per_s']} ({h['most_at_once']} requests at once)",
            f"{h.get('ratio', '-')}x",
        )
    pg = r.get("postgres")
    if pg:
        rates = pg["actions_per_s"]
        add(
            "PostgreSQL: actions/s, webhooks answering after 50 ms",
            f"{rates['1']} (1 daemon)",
            f"{rates['2']} (2), {rates['3']} (3)",
            f"{pg['scaling_3_vs_1']}x",
        )
        c = pg["burst"]
        add(
            f"PostgreSQL: burst of {c['changes']:,} changed deals to their inbox rows",
            f"committed code: {c.get('before_records_per_s', '?')} records/s",
            f"first after {c.get('lag_first_s', '?')} s, last after {c['lag_last_s']} s "
            f"({c['records_per_s']} records/s)",
            f"{c.get('ratio', '-')}x (poll interval {c['poll_interval_s']} s)",
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    started = time.monotonic()
    results = run()
    results["duration_s"] = round(time.monotonic() - started, 1)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = (
        f"Machine: {results['machine']}. Command: `make bench` "
        f"({results['duration_s']:.0f} s).\n\n{table(results)}"
    )
    (out / "latest.md").write_text(text, encoding="utf-8")
    readme = ROOT / "README.md"
    body = readme.read_text(encoding="utf-8")
    if README_BLOCK.search(body):
        body = README_BLOCK.sub(lambda m: m.group(1) + text + m.group(2), body)
        readme.write_text(body, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
