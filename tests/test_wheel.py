"""What a user installs: the sdist and the wheel built from it carry the example workflows
(rules/) and the JSON Schemas (schemas/), byte for byte, and every module of crmflow.

The package list in pyproject.toml is kept by hand (package-dir maps rules/ and schemas/
into crmflow/data/), so this is where a forgotten module or a lost data file shows up.
Building the wheel goes through pip and the build backend pyproject.toml asks for, as a
user's `pip install` does; pip fetches it from the package index once and caches it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Never part of a build: caches, local outputs, and the demo of `make run` (see .gitignore).
_TOP_LEVEL_OUTPUTS = {".git", "build", "dist", "demo", "mail", "bench-results"}
_ANYWHERE_OUTPUTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".crmflow"}


def _not_sources(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == ROOT
    return {
        name
        for name in names
        if name in _ANYWHERE_OUTPUTS
        or (top and name in _TOP_LEVEL_OUTPUTS)
        or name.endswith(".egg-info")  # a stale SOURCES.txt would feed the sdist
        or (Path(folder, name, "pyvenv.cfg").exists())  # a virtual environment
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel): the sdist from a clean copy of the checkout, the wheel from the sdist."""
    base = tmp_path_factory.mktemp("build")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_not_sources, symlinks=True)
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    sdist = subprocess.run(
        [sys.executable, "-c", code, str(base / "sdist")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sdist.returncode == 0, sdist.stderr
    archive = base / "sdist" / sdist.stdout.splitlines()[-1]
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "wheel", archive],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wheel.returncode == 0, wheel.stderr
    (built_wheel,) = (base / "wheel").glob("crmflow-*.whl")
    return archive, built_wheel


def _shipped() -> dict[str, bytes]:
    """rules/ and schemas/ of the checkout by relative path, and their bytes."""
    files = sorted((ROOT / "rules").glob("*.yaml")) + sorted((ROOT / "schemas").glob("*.json"))
    return {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in files}


def test_the_checkout_has_what_is_shipped() -> None:
    shipped = _shipped()
    assert sum(name.startswith("rules/") for name in shipped) >= 30
    assert {n for n in shipped if n.startswith("schemas/")} == {
        "schemas/config.schema.json",
        "schemas/test.schema.json",
        "schemas/workflow.schema.json",
    }


@pytest.mark.network
def test_the_sdist_carries_rules_and_schemas(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        prefix = tar.getnames()[0].split("/")[0] + "/"
        members = {
            m.name.removeprefix(prefix): m
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith((prefix + "rules/", prefix + "schemas/"))
        }
        assert sorted(members) == sorted(_shipped())
        for name, data in _shipped().items():
            packed = tar.extractfile(members[name])
            assert packed is not None and packed.read() == data, f"{name} differs in the sdist"


@pytest.mark.network
def test_the_wheel_carries_rules_schemas_and_every_module(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = {n.removeprefix("crmflow/data/") for n in names if n.startswith("crmflow/data/")}
        profiles = {
            f"profiles/{p.name}" for p in (ROOT / "crmflow" / "data" / "profiles").glob("*.yaml")
        }
        pages = {f"web/{p.name}" for p in (ROOT / "crmflow" / "data" / "web").glob("*.html")}
        assert profiles and pages
        assert data == {"entities.yaml", *profiles, *pages, *_shipped()}
        for name, content in _shipped().items():
            packed = archive.read(f"crmflow/data/{name}")
            assert packed == content, f"crmflow/data/{name} differs from {name}"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "crmflow").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel: pyproject's packages"
