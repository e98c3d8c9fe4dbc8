"""The pre-commit hooks of .pre-commit-hooks.yaml, tried as another repository uses them.

`pre-commit try-repo` installs crmflow into a hook environment of its own with pip (from
the package index: hence the network mark) and runs both hooks on a temporary repository
that holds workflows: first good ones, then with a mistake for each hook to find.

try-repo on a working tree would take its last commit plus changes to tracked files, and
leave out new files that are not staged yet (.pre-commit-hooks.yaml itself, once). So the
hooks are tried from a snapshot: every file git would commit (tracked, or new and not
ignored), copied as it is on disk into a repository of its own. That is the same in a
clean clone and in a working tree with changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("pre_commit", reason="pre-commit comes with the test extra")

GOOD = """\
id: deal-followup
entity: deal
trigger: {on: created}
actions:
  - create:
      entity: task
      values: {title: "Call about {{ deal.name }}", status: open}
    delay: 2d
"""

GOOD_TEST = """\
now: "2026-11-23T09:00:00Z"
cases:
  - name: a new deal gets a call two days later
    event: {entity: deal, event: created, record: {id: 1, name: ACME}}
    expect:
      rules:
        deal-followup:
          actions: [{type: create, due: now+2d}]
"""

# A misspelt field: lint reports it at its place.
BAD = """\
id: bad
entity: deal
trigger: {on: updated}
conditions:
  stagee: won
actions:
  - create: {entity: task, values: {title: x}}
"""

# Commits in the temporary repositories, whatever the machine's git configuration.
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "crmflow tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "crmflow tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=folder,
        env={**os.environ, **_GIT_IDENTITY},
        check=True,
        capture_output=True,
    )


def snapshot(target: Path) -> Path:
    """A repository whose one commit holds what `git add -A` would take from ROOT now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("the hooks are tried from a git checkout of crmflow")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "snapshot")
    return target


def try_repo(source: Path, home: Path, project: Path) -> subprocess.CompletedProcess[str]:
    """Every hook of `source` on `project`. try-repo installs crmflow anew on each call (into
    a temporary store), so each call tries both hooks; PRE_COMMIT_HOME keeps its log out of
    the user's cache."""
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(source), "--all-files"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def write(project: Path, name: str, text: str) -> None:
    (project / "rules" / name).write_text(text)
    git(project, "add", "-A")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """The hooks run on a repository with good workflows, then on the same with mistakes."""
    base = tmp_path_factory.mktemp("precommit")
    (base / "crmflow").mkdir()
    source = snapshot(base / "crmflow")
    project = base / "project"
    (project / "rules").mkdir(parents=True)
    git(project, "init", "-q")
    write(project, "deal-followup.yaml", GOOD)
    write(project, "deal-followup.test.yaml", GOOD_TEST)
    good = try_repo(source, base / "home", project)
    # A misspelt field for lint; for test, the workflow changes and its test does not.
    write(project, "bad.yaml", BAD)
    write(project, "deal-followup.yaml", GOOD.replace("delay: 2d", "delay: 3d"))
    broken = try_repo(source, base / "home", project)
    return {"good": good, "broken": broken}


def section(run: subprocess.CompletedProcess[str], hook: str) -> str:
    """What pre-commit printed for one failed hook: its lines up to the next hook's."""
    text = run.stdout.split(f"- hook id: {hook}\n", 1)[1]
    return text.split("- hook id: ", 1)[0]


@pytest.mark.network
def test_both_hooks_pass_on_good_workflows(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    good = runs["good"]
    assert good.returncode == 0, good.stdout + good.stderr
    for name in ("crmflow lint", "crmflow test"):
        (line,) = [line for line in good.stdout.splitlines() if line.startswith(name + ".")]
        assert line.endswith("Passed"), good.stdout


@pytest.mark.network
def test_the_lint_hook_reports_the_finding(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    broken = runs["broken"]
    assert broken.returncode == 1, broken.stdout + broken.stderr
    lint = section(broken, "crmflow-lint")
    assert "rules/bad.yaml:5:3: CF203 bad: stagee: deal has no field 'stagee'" in lint, lint


@pytest.mark.network
def test_the_test_hook_reports_the_failed_case(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    test = section(runs["broken"], "crmflow-test")
    assert "FAILED" in test and "0 passed, 1 failed" in test, test


def test_the_hooks_lint_and_test_the_whole_workflow_folder() -> None:
    """Each hook runs once on the configured folder: file names would lint a CI file as a
    workflow and leave a test case without its workflows."""
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"crmflow-lint", "crmflow-test"}
    for hook_id, command in (("crmflow-lint", "crmflow lint"), ("crmflow-test", "crmflow test")):
        hook = hooks[hook_id]
        assert hook["entry"] == command and hook["language"] == "python"
        assert hook["pass_filenames"] is False
        assert hook["files"] == r"\.ya?ml$"
