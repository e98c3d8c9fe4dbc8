"""Findings: what lint (and loading) reports, each with a stable code and a severity.

Codes are stable so CI configurations and people can refer to them:

CF0xx  files:     CF001 invalid YAML, CF002 duplicate key, CF003 not a mapping,
                  CF004 over a size limit (file, nodes, nesting, number)
CF1xx  schema:    CF101 unknown key, CF102 missing key, CF103 wrong type, CF104 invalid value
CF2xx  semantics: see SEMANTIC_CODES
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crmflow.errors import Location

Severity = Literal["error", "warning"]

SEMANTIC_CODES = {
    "CF201": "duplicate workflow id",
    "CF202": "unknown entity",
    "CF203": "unknown field",
    "CF204": "unknown relation",
    "CF205": "template syntax error",
    "CF206": "unknown name in a template",
    "CF207": "steps.X names no earlier action id",
    "CF208": "invalid duration",
    "CF209": "invalid cron expression",
    "CF210": "invalid time zone",
    "CF211": "change condition that can never hold for the trigger",
    "CF212": "unknown stage",
    "CF213": "invalid regular expression",
    "CF214": "date trigger on a field that is not a date",
    "CF215": "duplicate action id",
    "CF216": "fields filter that never applies",
    "CF217": "operator that cannot hold for the field's type",
    "CF218": "workflows that trigger each other in a loop",
    "CF219": "entity without a pipeline",
    "CF220": "operand of the wrong type for the field (no coercion: it never matches)",
    "CF221": "notify recipient that is no user id, owner, actor, role:NAME or e-mail",
    "CF222": "literal webhook URL that webhooks.allow refuses",
    "CF223": "wait with until but without on_met",
    "CF224": "template whose constants go over a bound of one rendering",
    "CF225": "business days or hours without a calendar",
    "CF226": "sms without a gateway in the configuration",
    "CF227": "document template file that cannot be read",
    "CF228": "run mode that cannot apply to the workflow",
    "CF229": "digest that cannot be collected or sent",
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    location: Location
    workflow: str | None = None

    def line(self) -> str:
        prefix = f"{self.workflow}: " if self.workflow else ""
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.location}: {self.code} {tag}{prefix}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "code": self.code,
            "severity": self.severity,
            "workflow": self.workflow,
            "message": self.message,
        }

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.file, self.location.line, self.location.column, self.code)
