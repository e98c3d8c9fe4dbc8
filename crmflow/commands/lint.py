"""`crmflow lint`: every stage of checks over workflow files, reported per format."""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path

from crmflow.config import Config
from crmflow.errors import ConfigError, YamlError
from crmflow.findings import Finding
from crmflow.rules.ruleset import Loaded, add_documents, check, check_each, load_documents
from crmflow.rules.semantics import Summary, across_findings, summary_of
from crmflow.rules.yamlload import iter_yaml_files, load_file, load_text, read_text, split_stream

FORMATS = ("text", "json", "github")


@dataclass
class LintReport:
    findings: list[Finding]
    files: int
    workflows: int

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    def exit_code(self, strict: bool = False) -> int:
        if self.errors or (strict and self.warnings):
            return 1
        return 0


# Below this many bytes of workflows, starting processes costs more than it saves.
PARALLEL_BYTES = 1024 * 1024


def lint_paths(paths: list[Path], config: Config) -> LintReport:
    """Lint the workflow files under `paths` (YAML, schema, semantics, loops).

    Large folders and files are checked in one process per core: each document is checked
    on its own (a big stream is cut between documents), and only what the checks across
    workflows need (ids, what each listens to and writes) comes back to this process.
    """
    files = _files(paths)
    workers = _workers(files)
    if workers < 2:
        loaded = load_documents(paths)
        findings = check(loaded, config, full=True)
        return LintReport(findings, loaded.files, len(loaded.documents))
    pieces, findings = _pieces(files, workers)
    import multiprocessing

    global _CONFIG
    _CONFIG = config  # the workers are forked: they have it without pickling
    # What the parent holds is never freed in a worker: the collector need not scan it.
    gc.freeze()
    with multiprocessing.get_context("fork").Pool(workers, initializer=gc.disable) as pool:
        results = pool.map(_check_piece, pieces, chunksize=max(1, len(pieces) // (workers * 4)))
    summaries: list[Summary] = []
    documents = 0
    for piece_findings, piece_summaries, count in results:
        findings.extend(piece_findings)
        summaries.extend(piece_summaries)
        documents += count
    findings.extend(across_findings(summaries, full=True))
    findings.sort(key=lambda f: f.sort_key)
    return LintReport(findings, len(files), documents)


_CONFIG: Config | None = None
# A piece of work: a file to read, or a piece of a big stream (its text and first line).
_Piece = tuple[str, str | None, int]


def _files(paths: list[Path]) -> list[Path]:
    for root in paths:
        if not root.exists():
            raise ConfigError(f"{root}: no such file or folder")
    return list(iter_yaml_files(paths))


def _workers(files: list[Path]) -> int:
    """How many processes: one per core the process may use, when there is enough."""
    if "fork" not in _start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    size = 0
    for file in files:
        try:
            size += file.stat().st_size
        except OSError:
            continue
    return min(cores or 1, 8) if size >= PARALLEL_BYTES else 1


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


def _pieces(files: list[Path], workers: int) -> tuple[list[_Piece], list[Finding]]:
    """Small files whole; a file of more than a worker's share cut between documents.
    Files that cannot be read are findings here, once."""
    total = sum(f.stat().st_size for f in files)
    share = max(total // workers, 1)
    pieces: list[_Piece] = []
    findings: list[Finding] = []
    for file in files:
        if file.stat().st_size <= share:
            pieces.append((str(file), None, 1))
            continue
        try:
            text = read_text(file)
        except YamlError as exc:
            assert exc.location is not None
            findings.append(Finding(exc.code or "CF001", "error", exc.message, exc.location))
            continue
        parts = max(2, round(len(text) / share))
        pieces.extend((str(file), chunk, line) for line, chunk in split_stream(text, parts))
    return pieces, findings


def _check_piece(piece: _Piece) -> tuple[list[Finding], list[Summary], int]:
    """In a worker: the findings of each document of a piece, and their summaries."""
    file, text, first_line = piece
    config = _CONFIG
    assert config is not None
    loaded = Loaded()
    if text is None:
        add_documents(loaded, lambda: load_file(file))
    else:
        add_documents(loaded, lambda: load_text(text, file, first_line))
    findings, valid = check_each(loaded, config, full=True)
    return findings, [summary_of(doc, config.model) for doc in valid], len(loaded.documents)


def render(report: LintReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "files": report.files,
                "workflows": report.workflows,
                "errors": report.errors,
                "warnings": report.warnings,
                "findings": [f.to_json() for f in report.findings],
            },
            ensure_ascii=False,
        )
    if fmt == "github":
        lines = []
        for f in report.findings:
            kind = "error" if f.severity == "error" else "warning"
            message = f"{f.code} " + (f"{f.workflow}: " if f.workflow else "") + f.message
            message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            lines.append(
                f"::{kind} file={f.location.file},line={f.location.line},"
                f"col={f.location.column},title={f.code}::{message}"
            )
        return "\n".join(lines)
    lines = [f.line() for f in report.findings]
    summary = (
        f"{report.files} file{'s' if report.files != 1 else ''}, "
        f"{report.workflows} workflow{'s' if report.workflows != 1 else ''}: "
    )
    if not report.findings:
        summary += "no problems"
    else:
        summary += (
            f"{report.errors} error{'s' if report.errors != 1 else ''}, "
            f"{report.warnings} warning{'s' if report.warnings != 1 else ''}"
        )
    lines.append(summary)
    return "\n".join(lines)
