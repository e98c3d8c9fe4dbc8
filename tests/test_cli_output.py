"""What the command line says to people: fixed-width times, the daemon line of `status`,
and a missing database driver named with the extra that installs it."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result, crmflow_bin

Cli = Callable[..., Result]
FIXED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_history_and_status_print_times_of_one_width(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "demo").code == 0
    folder = tmp_path / "demo"
    assert cli("tick", cwd=folder).code == 0
    lines = cli("history", "--all", cwd=folder).out.splitlines()
    assert len(lines) >= 3
    # Every line starts with a time of the same width, so the columns line up.
    assert all(FIXED.match(line) for line in lines), lines
    assert len({line.index(" ") for line in lines}) == 1
    status = cli("status", cwd=folder).out.splitlines()
    assert status[0] == "daemon:       not running (start one with `crmflow run`)"
    assert FIXED.search(status[1]) and status[1].startswith("last poll:    "), status


def test_the_format_is_fixed_whatever_the_fraction() -> None:
    from datetime import UTC, datetime

    from crmflow.timeutil import format_fixed

    moments = [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 100000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
    ]
    texts = [format_fixed(m) for m in moments]
    assert texts == [
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05.100Z",
        "2026-01-02T03:04:05.999Z",
    ]


@pytest.fixture
def without_psycopg(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import psycopg` fails, as on a machine without the extra."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["psycopg"] = None\n')
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.mark.parametrize(
    ("config", "command", "message"),
    [
        (
            "state: postgresql+psycopg://u@127.0.0.1:1/x\n",
            "status",
            "crmflow: state: the database driver psycopg is not installed "
            "(pip install 'crmflow[postgres]')",
        ),
        (
            "crm: postgresql+psycopg://u@127.0.0.1:1/x\n",
            "tick",
            "crmflow: crm: the database driver psycopg is not installed "
            "(pip install 'crmflow[postgres]')",
        ),
        (
            "crm: mongodb://u@127.0.0.1:1/x\n",
            "tick",
            "crmflow: crm: no database driver for mongodb:// (use sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST/DB)",
        ),
    ],
)
def test_a_missing_driver_names_what_to_install(
    tmp_path: Path, without_psycopg: dict[str, str], config: str, command: str, message: str
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "w.yaml").write_text(
        "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n"
    )
    (tmp_path / "crmflow.yaml").write_text(config)
    proc = subprocess.run(
        [crmflow_bin(), command],
        cwd=tmp_path,
        env=without_psycopg,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [message]
