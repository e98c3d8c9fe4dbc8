"""Loading and linting at scale: one 2 MB file, memory against file size, 1,000 workflows.

- `crmflow lint` of one 2 MB file of ~12,000 workflows (a multi-document stream) without
  the validation cache, with an empty one and with a filled one, against loading the
  same file with PyYAML's C loader (`yaml.load_all(text, Loader=yaml.CSafeLoader)`).
- Memory against file size: what `load_file` keeps and its peak (tracemalloc), and the
  peak RSS of `crmflow lint`, for files of 2 and 10 MB; linear memory keeps the 10/2
  ratios near 5.
- `load_ruleset` of 1,000 workflow files without the cache (a fresh process, seconds
  after its imports), and the memory the compiled rules keep (tracemalloc).
- `crmflow lint` of the same 1,000 files against PyYAML's C loader (bench.commandline).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from bench import commandline

MB = 1024 * 1024
WORKFLOW = """\
id: w{n}
entity: deal
trigger: {{on: updated, fields: [stage]}}
conditions:
  stage: {{changed_to: won}}
actions:
  - notify: {{to: [owner], subject: "Won: {{{{ deal.name }}}}"}}
"""
LOAD_ALL = (
    "import sys, yaml\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "list(yaml.load_all(text, Loader=yaml.CSafeLoader))\n"
)
LOAD_RULES = """\
import gc, json, sys, time, tracemalloc
from pathlib import Path
from crmflow.config import Config
from crmflow.rules import compiler, semantics, validate  # imports are not the load
from crmflow.rules.ruleset import load_ruleset

started = time.perf_counter()
rules = load_ruleset([Path(sys.argv[1])], Config())
seconds = time.perf_counter() - started
del rules
gc.collect()
tracemalloc.start()
rules = load_ruleset([Path(sys.argv[1])], Config())
gc.collect()
print(json.dumps({"seconds": seconds, "workflows": len(rules),
                  "held": tracemalloc.get_traced_memory()[0]}))
"""


def write_stream(path: Path, size: int) -> int:
    """A multi-document file of `size` bytes or a little more; the number of workflows."""
    parts: list[str] = []
    total = 0
    while total < size:
        part = ("---\n" if parts else "") + WORKFLOW.format(n=len(parts))
        parts.append(part)
        total += len(part)
    path.write_text("".join(parts), encoding="utf-8")
    return len(parts)


def _best(cmd: list[str], env: dict[str, str], runs: int, fresh_cache: Path | None = None) -> Any:
    """Best seconds and the peak RSS (KiB) of that run; a fresh cache folder per run if asked."""
    best: tuple[float, int] = (float("inf"), 0)
    for run in range(runs):
        run_env = env
        if fresh_cache is not None:
            run_env = dict(env, CRMFLOW_CACHE_DIR=str(fresh_cache / str(run)))
        seconds, peak, code = commandline._run(cmd, None, run_env)
        if code not in (0, 1):
            raise RuntimeError(f"{cmd} exited {code}")
        best = min(best, (seconds, peak))
    return best


def measure_lint_file(folder: Path, env: dict[str, str], runs: int = 3) -> dict[str, Any]:
    target = folder / "stream" / "many.yaml"
    target.parent.mkdir()
    workflows = write_stream(target, 2 * MB)
    crmflow = str(Path(sys.executable).parent / "crmflow")
    lint = [crmflow, "lint", str(target.parent)]
    warm_dir = folder / "warm-cache"
    commandline._run(lint, None, dict(env, CRMFLOW_CACHE_DIR=str(warm_dir)))  # fill it
    no_cache_s, no_cache_kib = _best(lint, dict(env, CRMFLOW_CACHE_DIR=""), runs)
    cold_s, _ = _best(lint, env, runs, fresh_cache=folder / "cold-cache")
    warm_s, _ = _best(lint, dict(env, CRMFLOW_CACHE_DIR=str(warm_dir)), runs)
    base_s, base_kib = _best([sys.executable, "-c", LOAD_ALL, str(target)], env, runs)
    return {
        "bytes": target.stat().st_size,
        "workflows": workflows,
        "no_cache_s": round(no_cache_s, 2),
        "cold_cache_s": round(cold_s, 2),
        "warm_cache_s": round(warm_s, 2),
        "peak_kib": no_cache_kib,
        "baseline_s": round(base_s, 2),
        "baseline_peak_kib": base_kib,
        "ratio": round(no_cache_s / base_s, 2),
    }


def _traced_load(path: Path) -> tuple[int, int]:
    """Bytes `load_file` keeps, and its peak, as tracemalloc counts them."""
    from crmflow.rules.yamlload import load_file

    gc.collect()
    tracemalloc.start()
    try:
        docs = load_file(path)
        held, peak = tracemalloc.get_traced_memory()
        del docs
    finally:
        tracemalloc.stop()
    return held, peak


def measure_memory(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    crmflow = str(Path(sys.executable).parent / "crmflow")
    result: dict[str, Any] = {}
    for size in (2, 10):
        target = folder / f"memory-{size}" / "many.yaml"
        target.parent.mkdir()
        # 10 MB stays under the 10 MiB a file may have.
        write_stream(target, size * 1000 * 1000 - 2000)
        held, peak = _traced_load(target)
        _, rss, code = commandline._run(
            [crmflow, "lint", str(target.parent)], None, dict(env, CRMFLOW_CACHE_DIR="")
        )
        if code not in (0, 1):
            raise RuntimeError(f"crmflow lint exited {code} on {target}")
        length = target.stat().st_size
        result[f"{size}mb"] = {
            "bytes": length,
            "held_mb": round(held / MB, 1),
            "peak_mb": round(peak / MB, 1),
            "held_per_byte": round(held / length, 1),
            "lint_peak_rss_mb": round(rss / 1024, 1),
        }
    small, large = result["2mb"], result["10mb"]
    result["held_ratio"] = round(large["held_mb"] / small["held_mb"], 2)
    result["size_ratio"] = round(large["bytes"] / small["bytes"], 2)
    result["rss_ratio"] = round(large["lint_peak_rss_mb"] / small["lint_peak_rss_mb"], 2)
    return result


def measure_load(folder: Path, env: dict[str, str], runs: int = 3) -> dict[str, Any]:
    files = folder / "lint-rules"  # written by bench.commandline.measure_lint
    best: dict[str, Any] | None = None
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_RULES, str(files)],
            capture_output=True,
            env=dict(env, CRMFLOW_CACHE_DIR=""),
            check=True,
        ).stdout
        run = json.loads(out)
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    assert best is not None
    return {
        "workflows": best["workflows"],
        "seconds": round(best["seconds"], 3),
        "compiled_mb": round(best["held"] / MB, 2),
    }


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(os.environ, CRMFLOW_CACHE_DIR=str(folder / "cache"))
        lint_files = commandline.measure_lint(folder, env)
        return {
            "lint_file": measure_lint_file(folder, env),
            "memory": measure_memory(folder, env),
            "load": measure_load(folder, env),
            "lint_files": lint_files,
        }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
