from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator, Plan
from crmflow.engine.events import parse_event
from crmflow.rules.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parent.parent
# Keep the validation cache of test runs (and of the commands they start) out of ~/.cache.
os.environ["CRMFLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="crmflow-test-cache-")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def crmflow_bin() -> str:
    """The installed console script: tests go through the real entry point."""
    candidate = Path(sys.executable).parent / "crmflow"
    return str(candidate) if candidate.exists() else "crmflow"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default="all",
        choices=("sqlite", "postgres", "all"),
        help="database backend(s) for the database tests (default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        choice = metafunc.config.getoption("backend")
        metafunc.parametrize("backend", ["sqlite", "postgres"] if choice == "all" else [choice])


@pytest.fixture(scope="session")
def postgres_admin(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL server for the session: CRMFLOW_TEST_POSTGRES, or a private one."""
    if request.config.getoption("backend") == "sqlite":
        pytest.skip("a PostgreSQL test, and --backend sqlite runs the SQLite part only")
    configured = os.environ.get("CRMFLOW_TEST_POSTGRES")
    if configured:
        yield configured
        return
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    try:
        url = server.start()
    except Exception as exc:  # no server binaries, or they would not start
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests must run in CI, but no server could start: {exc}")
        pytest.skip(f"no PostgreSQL server here ({exc}); run with --backend sqlite")
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    """Daemon subprocesses started through tests.processes end with their test."""
    from tests import processes

    yield
    processes.end_all()


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the backend under test, as an SQLAlchemy URL."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    from tests.pgserver import create_database

    return create_database(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Run `crmflow ARGS` in tmp_path with optional stdin."""

    def run(*args: str, stdin: str = "", cwd: Path | None = None) -> Result:
        proc = subprocess.run(
            [crmflow_bin(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd or tmp_path,
            timeout=60,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def rules_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write workflow files: rules_dir({"a.yaml": "..."}) -> the folder."""

    def write(files: dict[str, str]) -> Path:
        folder = tmp_path / "rules"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return folder

    return write


@pytest.fixture
def plan_for(rules_dir: Callable[..., Path]) -> Callable[..., dict[str, Any]]:
    """Evaluate one event against workflows given as YAML text; returns the plan JSON."""

    def run(
        workflows: str | dict[str, str],
        event: dict[str, Any],
        *,
        now: datetime = NOW,
        seed: int | None = 1,
        config: Config | None = None,
    ) -> dict[str, Any]:
        files = {"w.yaml": workflows} if isinstance(workflows, str) else workflows
        folder = rules_dir(files)
        cfg = config or Config()
        rules = load_ruleset([folder], cfg)
        plan: Plan = Evaluator(rules, cfg.timezone, seed=seed).evaluate(
            parse_event(event, cfg.model), now
        )
        return plan.to_json()

    return run
