"""The error hierarchy: what went wrong, where, and which exit code it means.

Configuration errors (bad workflow files, bad events, bad settings) exit 2; findings of
`lint` exit 1; actions that fail at run time exit 3. Every user-facing error renders as one
line naming a file position or a field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # crmflow.findings imports Location from here; the checker alone needs Finding.
    from crmflow.findings import Finding

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_ACTION_FAILED = 3


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# Containers as a workflow or configuration file calls them (YAML), and as an event does
# (JSON): the messages use the words of what the user wrote.
_CONTAINER_WORDS = {dict: "a mapping", list: "a list"}
_JSON_CONTAINER_WORDS = {dict: "an object", list: "an array"}


def type_name(value: Any, *, json: bool = False) -> str:
    """The JSON type of a decoded value in words, for messages: "a list", "null".

    `json` names containers as JSON does ("an object", "an array") for JSON input.
    """
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    if type(value) is str:
        return "a string"
    words = _JSON_CONTAINER_WORDS if json else _CONTAINER_WORDS
    return words.get(type(value), type(value).__name__)


def format_path(path: Iterable[Any]) -> str:
    """Where in a document a value stands, as people write it: `actions[0].notify.to`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


class CrmflowError(Exception):
    """Base of every error crmflow reports to a user."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, location: Location | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.code = code

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        code = f"{self.code} " if self.code else ""
        return f"{where}{code}{self.message}"

    def lines(self) -> list[str]:
        """What the command line prints: one line for each mistake."""
        return [str(self)]


class ConfigError(CrmflowError):
    """Bad configuration: a workflow file, crmflow.yaml, a test file, an option."""


class ConfigErrors(ConfigError):
    """Several mistakes in one file, reported together so one run shows them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.location, first.code)
        self.errors = errors

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


class YamlError(ConfigError):
    """A YAML file that does not load."""

    def __init__(self, location: Location, message: str, code: str = "CF001") -> None:
        super().__init__(message, location, code)


class WorkflowError(ConfigError):
    """Workflow files that fail validation; carries every finding."""

    def __init__(self, findings: list[Finding]) -> None:
        first = findings[0]
        more = f" (and {len(findings) - 1} more; run crmflow lint)" if len(findings) > 1 else ""
        prefix = f"{first.workflow}: " if first.workflow else ""
        super().__init__(f"{prefix}{first.message}{more}", first.location, first.code)
        self.findings = findings


class EventError(ConfigError):
    """An input event that is not valid."""


class ActionError(CrmflowError):
    """An action that failed while being carried out."""

    exit_code = EXIT_ACTION_FAILED
