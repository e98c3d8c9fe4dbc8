"""The command line at scale: an event stream through `crmflow eval`, and lint of 1,000 files.

- `crmflow eval --dry-run --format json` over NDJSON streams of 10,000 and 100,000 events
  with 100 workflows: events per second, and the peak memory of both (constant in the
  stream length when their ratio stays near 1). The baseline is the least any NDJSON
  filter pays: a Python process reading each line with json.loads and writing json.dumps.
- `crmflow lint` of 1,000 workflow files (no validation cache: every file is parsed with
  positions, schema-checked and its templates compiled) against loading the same files
  with PyYAML's C loader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import workload

STREAM_WORKFLOWS = 100
LINT_FILES = 1000
NOW = "2026-11-22T10:00:00Z"

ECHO_JSON = (
    "import json, sys\n"
    "out = sys.stdout\n"
    "for line in sys.stdin:\n"
    "    out.write(json.dumps(json.loads(line)) + '\\n')\n"
)
LOAD_YAML = (
    "import sys, yaml\n"
    "from pathlib import Path\n"
    "for path in sorted(Path(sys.argv[1]).glob('*.yaml')):\n"
    "    yaml.load(path.read_text(), Loader=yaml.CSafeLoader)\n"
)


def _run(cmd: list[str], stdin: Path | None, env: dict[str, str]) -> tuple[float, int, int]:
    """Seconds, peak memory (KiB) and exit code of one command, stdout discarded.

    The peak comes from GNU time, a small process of its own: a child forked from this
    one would count this process's memory as its own until it execs.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        timed = ["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd]
        started = time.perf_counter()
        with open(stdin or os.devnull, "rb") as source:
            code = subprocess.run(
                timed, stdin=source, stdout=subprocess.DEVNULL, env=env, check=False
            ).returncode
        seconds = time.perf_counter() - started
        peak = int(report.read().strip().splitlines()[-1])
    return seconds, peak, code


def _write_stream(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for event in workload.events(count, seed=23):
            out.write(
                json.dumps(
                    {
                        "entity": event.entity,
                        "event": event.event,
                        "record": event.record,
                        "previous": event.previous,
                    }
                )
                + "\n"
            )


def measure_stream(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    rules = folder / "stream-rules"
    rules.mkdir()
    docs = workload.crmflow_documents(workload.rules(STREAM_WORKFLOWS, seed=5))
    (rules / "workflows.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    crmflow = str(Path(sys.executable).parent / "crmflow")
    cmd = [crmflow, "eval", "--dry-run", "--format", "json", "--rules", str(rules)]
    cmd += ["--now", NOW, "--seed", "1"]
    result: dict[str, Any] = {"workflows": STREAM_WORKFLOWS}
    for count in (10_000, 100_000):
        stream = folder / f"events-{count}.ndjson"
        _write_stream(stream, count)
        seconds, peak, code = _run(cmd, stream, env)
        if code != 0:
            raise RuntimeError(f"crmflow eval exited {code} on {stream}")
        base_s, base_peak, _ = _run([sys.executable, "-c", ECHO_JSON], stream, env)
        result[str(count)] = {
            "events": count,
            "seconds": round(seconds, 2),
            "eps": round(count / seconds),
            "peak_kib": peak,
            "baseline_eps": round(count / base_s),
            "baseline_peak_kib": base_peak,
        }
    small, large = result["10000"], result["100000"]
    result["memory_ratio"] = round(large["peak_kib"] / small["peak_kib"], 2)
    result["vs_json_filter"] = round(large["eps"] / large["baseline_eps"], 3)
    return result


def measure_lint(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    files = folder / "lint-rules"
    files.mkdir()
    docs = workload.crmflow_documents(workload.rules(LINT_FILES, seed=3))
    for doc in docs:
        # A template of its own in every file, so the template checks have work to do.
        subject = "{{ record.name }} (" + doc["id"] + ")"
        doc["actions"] = [{"notify": {"to": "team@example.org", "subject": subject}}]
        (files / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    crmflow = str(Path(sys.executable).parent / "crmflow")
    no_cache = dict(env, CRMFLOW_CACHE_DIR="")
    lint_cmd = [crmflow, "lint", str(files)]
    base_cmd = [sys.executable, "-c", LOAD_YAML, str(files)]
    best = {"lint": float("inf"), "base": float("inf")}
    for _ in range(3):
        seconds, _, code = _run(lint_cmd, None, no_cache)
        if code not in (0, 1):  # 1: warnings are findings too; 2 would be a crash or misuse
            raise RuntimeError(f"crmflow lint exited {code}")
        best["lint"] = min(best["lint"], seconds)
        best["base"] = min(best["base"], _run(base_cmd, None, env)[0])
    return {
        "files": LINT_FILES,
        "lint_s": round(best["lint"], 2),
        "baseline_s": round(best["base"], 2),
        "ratio": round(best["lint"] / best["base"], 2),
    }


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(os.environ, CRMFLOW_CACHE_DIR=str(folder / "cache"))
        return {"stream": measure_stream(folder, env), "lint": measure_lint(folder, env)}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
