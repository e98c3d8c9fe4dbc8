"""`crmflow lint`: every stage of checks over workflow files, reported per format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from crmflow.config import Config
from crmflow.findings import Finding
from crmflow.rules.ruleset import check, load_documents

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


def lint_paths(paths: list[Path], config: Config) -> LintReport:
    """Lint the workflow files under `paths` (YAML, schema, semantics, loops)."""
    loaded = load_documents(paths)
    findings = check(loaded, config, full=True)
    return LintReport(findings, loaded.files, len(loaded.documents))


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
