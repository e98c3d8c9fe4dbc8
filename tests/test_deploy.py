"""deploy/: the systemd unit verifies, the state goes where the unit lets it write, and
the sysusers snippet makes the user the unit runs as."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crmflow.config import load_config
from tests.conftest import ROOT, crmflow_bin

DEPLOY = ROOT / "deploy"


def test_the_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here")
    unit = (DEPLOY / "crmflow.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "StateDirectory=crmflow" in unit
    # The unit names the usual install path; here the command is this checkout's.
    unit = unit.replace("/opt/crmflow/venv/bin/crmflow", crmflow_bin())
    (tmp_path / "crmflow.service").write_text(unit)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "crmflow.service")],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    # Unknown keys are only warnings to systemd ("ignoring"): each one is a mistake here.
    problems = [line for line in result.stderr.splitlines() if "crmflow.service" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_the_sysusers_snippet_names_the_units_user() -> None:
    unit = (DEPLOY / "crmflow.service").read_text()
    lines = [
        line.split()
        for line in (DEPLOY / "crmflow.sysusers").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0][:2] == ["u", "crmflow"]
    assert "User=crmflow" in unit and "Group=crmflow" in unit


def test_without_state_the_state_goes_to_the_units_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "crmflow.yaml").write_text("timezone: UTC\n")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert load_config(config_dir / "crmflow.yaml").state_url.endswith("etc/.crmflow/state.db")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var"))
    url = load_config(config_dir / "crmflow.yaml").state_url
    assert url == f"sqlite:///{tmp_path / 'var' / 'state.db'}"


def test_the_example_configuration_of_the_unit_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DB_PASSWORD", "x")
    config = load_config(DEPLOY / "crmflow.yaml")
    assert config.crm is not None and config.crm.startswith("postgresql+psycopg://")
