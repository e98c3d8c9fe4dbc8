"""Cold start of `crmflow eval --dry-run` on one event against importing its libraries.

The baseline is `python -c "import typer, yaml, jinja2, jsonschema"`: what any Python
CLI on these libraries pays before doing anything. Runs alternate between the two
commands so load on the machine hits both alike; medians are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import spec_example

ROOT = Path(__file__).resolve().parent.parent
# The SPEC's example deal update, through the example workflows of rules/.
EVENT = json.dumps(spec_example.EVENT).encode()


def _time(cmd: list[str], stdin: bytes | None, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def measure(runs: int = 10) -> dict[str, float]:
    import compileall

    # Measure the installed form: modules compiled, as pip does for a wheel.
    compileall.compile_dir(str(ROOT / "crmflow"), quiet=1)
    bindir = Path(sys.executable).parent
    crmflow = str(bindir / "crmflow")
    baseline_cmd = [sys.executable, "-c", "import typer, yaml, jinja2, jsonschema"]
    eval_cmd = [crmflow, "eval", "--dry-run", "--format", "json", "--rules", "rules"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, CRMFLOW_CACHE_DIR=cache)
        # The first run fills the validation cache, as a user's first run does.
        first = _time(eval_cmd, EVENT, env)
        env_nocache = dict(os.environ, CRMFLOW_CACHE_DIR="")
        base, ours, cold = [], [], []
        for _ in range(runs):
            base.append(_time(baseline_cmd, None, env))
            ours.append(_time(eval_cmd, EVENT, env))
            cold.append(_time(eval_cmd, EVENT, env_nocache))
    b, o = statistics.median(base), statistics.median(ours)
    return {
        "baseline_ms": round(b * 1000, 1),
        "eval_ms": round(o * 1000, 1),
        "ratio": round(o / b, 2),
        "first_run_ms": round(first * 1000, 1),
        "no_cache_ms": round(statistics.median(cold) * 1000, 1),
        "no_cache_ratio": round(statistics.median(cold) / b, 2),
        "runs": runs,
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
