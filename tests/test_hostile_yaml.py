"""`crmflow lint` against hostile YAML (SPEC §9): one finding per bad file, never a crash.

Each case runs the real command with its address space capped at 1 GB and a timeout, and
measures that child's own peak RSS with wait4(): RUSAGE_CHILDREN would report the largest
child this whole test session ever had. Small samples live in tests/hostile/yaml/; the big
ones are generated here so the repository does not carry megabytes.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from crmflow.rules.yamlload import MAX_DEPTH, MAX_FILE_BYTES, MAX_INT_DIGITS, MAX_NODES
from tests.conftest import crmflow_bin

SAMPLES = Path(__file__).parent / "hostile" / "yaml"
MEMORY_CAP = 1024 * 1024 * 1024
SECONDS = 2.0
PEAK_MB = 200.0

# A workflow with one schema finding: the other files of a folder must still be linted.
GOOD_WITH_FINDING = """\
id: good
entity: deal
trigger: {on: created, fieldz: [stage]}
actions: [{warn: x}]
"""
GOOD_FINDING = ":3:24: CF101 good: trigger: unknown trigger key 'fieldz'"

WORKFLOW = """\
id: w{n}
entity: deal
trigger: {{on: updated, fields: [stage]}}
conditions:
  stage: {{changed_to: won}}
actions:
  - notify: {{to: [owner], subject: "Won: {{{{ deal.name }}}}"}}
"""
TWO_MB = 2 * 1024 * 1024


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float

    @property
    def lines(self) -> list[str]:
        return (self.out + self.err).splitlines()


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def lint_capped(target: Path, timeout: float = 30.0) -> Run:
    """`crmflow lint target` with memory capped: exit code, output, seconds and peak RSS."""
    folder = target.parent
    with (folder / ".out").open("w+b") as out, (folder / ".err").open("w+b") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [crmflow_bin(), "lint", str(target)],
            stdout=out,
            stderr=err,
            cwd=folder,
            preexec_fn=_cap_memory,
        )
        # wait4() rather than proc.wait(): it returns this child's own resource usage.
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                proc.wait()
                pytest.fail(f"crmflow lint {target.name} ran for more than {timeout} s")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_maxrss / 1024,  # KiB on Linux
        )


def _deep(path: Path) -> None:
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")


def _deep_block(path: Path) -> None:
    # Block mappings: libyaml's own flow-depth bound does not come into play here.
    path.write_text("".join(" " * i + "k:\n" for i in range(MAX_DEPTH + 50)))


def _one_huge_document(path: Path) -> None:
    head = "id: w\nentity: deal\ntrigger: {on: created}\nactions:\n"
    path.write_text(head + "  - warn: x\n" * (TWO_MB // 12))


def _oversized(path: Path) -> None:
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))


def _chained_aliases(path: Path) -> None:
    # Each anchor is written shallow, but expanding the aliases nests them ever deeper.
    lines = ["a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 20)]
    path.write_text("\n".join(lines) + "\n")


# name -> (how to make the file, the finding line without the file name)
CASES: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "alias_bomb.yaml": (
        None,
        f":6:4: CF004 document has more than {MAX_NODES:,} nodes once aliases are expanded",
    ),
    "huge_int.yaml": (None, f":5:9: CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
    "huge_hex.yaml": (None, f":5:9: CF004 integer has more than {MAX_INT_DIGITS:,} digits"),
    "float_overflow.yaml": (None, ":5:9: CF004 number '1e999' is out of range"),
    "not_utf8.yaml": (None, ":2:10: CF001 file is not UTF-8 text"),
    "nul_byte.yaml": (None, ":2:11: CF001 invalid YAML: character U+0000 is not allowed"),
    "deep.yaml": (_deep, f": CF004 document nests deeper than {MAX_DEPTH} levels"),
    "deep_block.yaml": (_deep_block, f": CF004 document nests deeper than {MAX_DEPTH} levels"),
    "chained_aliases.yaml": (
        _chained_aliases,
        f": CF004 document nests deeper than {MAX_DEPTH} levels",
    ),
    "huge_document.yaml": (_one_huge_document, f": CF004 document has more than {MAX_NODES:,}"),
    "oversized.yaml": (_oversized, ":1:1: CF004 file is larger than 10 MiB (the limit)"),
}


def _place(name: str, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / name
    make = CASES[name][0]
    if make is None:
        shutil.copyfile(SAMPLES / name, target)
    else:
        make(target)
    return target


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_hostile_file_is_one_finding_at_once(name: str, tmp_path: Path) -> None:
    target = _place(name, tmp_path / "rules")
    run = lint_capped(target)
    assert run.code == 1, run.lines
    assert len(run.lines) == 2, run.lines  # the finding and the summary line
    finding = run.lines[0]
    assert finding.startswith(str(target)), finding
    assert CASES[name][1] in finding, finding
    assert run.seconds < SECONDS, f"{run.seconds:.2f} s"
    assert run.peak_mb < PEAK_MB, f"{run.peak_mb:.0f} MB"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_other_files_of_a_folder_are_still_linted(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    _place(name, folder)
    (folder / "good.yaml").write_text(GOOD_WITH_FINDING)
    run = lint_capped(folder)
    assert run.code == 1, run.lines
    assert any(line.startswith(str(folder / name)) for line in run.lines), run.lines
    assert any(GOOD_FINDING in line for line in run.lines), run.lines
    assert run.lines[-1].startswith("2 files, 1 workflow:"), run.lines


def test_all_samples_are_covered() -> None:
    samples = {path.name for path in SAMPLES.iterdir()}
    assert samples <= set(CASES), samples - set(CASES)


def _many_workflows(path: Path, size: int) -> None:
    parts: list[str] = []
    total = 0
    while total < size:
        part = ("---\n" if parts else "") + WORKFLOW.format(n=len(parts))
        parts.append(part)
        total += len(part)
    path.write_text("".join(parts))


def test_two_megabytes_of_workflows_lint_in_bounded_memory(tmp_path: Path) -> None:
    """12,000 workflows in one 2 MB file: linted whole, in memory linear in the file.

    (Its time is measured in the issue's note, not asserted: a wall-clock bound fails on
    a loaded machine. Warm, it lints in ~1.6 s here, where it took ~13 s.)"""
    target = tmp_path / "rules" / "many.yaml"
    target.parent.mkdir()
    _many_workflows(target, TWO_MB)
    run = lint_capped(target, timeout=120)
    assert run.code == 0, run.lines
    assert run.peak_mb < PEAK_MB, f"{run.peak_mb:.0f} MB"
