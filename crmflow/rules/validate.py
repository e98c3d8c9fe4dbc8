"""Schema validation with errors people can act on.

A valid document is recognised by the schema's compiled check (`fastschema`); only a
document it refuses goes to jsonschema, whose errors say why. jsonschema reports
`oneOf`/`anyOf` failures as a dump of every branch; here each error is reduced to the
branch the user meant (the one whose type and key fit the value), mapped back to
`file:line:col` through the loader's positions, and worded as one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Protocol

from crmflow.errors import format_path, type_name
from crmflow.findings import Finding
from crmflow.rules.entities import suggest
from crmflow.rules.fastschema import Check, Unsupported, compile_schema
from crmflow.rules.yamlload import Document

if TYPE_CHECKING:
    # jsonschema is imported only when a document is invalid: a valid rules folder
    # never pays for it.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class Validator(Protocol):
    """What schema_findings needs of a validator (jsonschema's have it too)."""

    @property
    def schema(self) -> Any: ...

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]: ...


class SchemaValidator:
    """A schema's compiled check, with jsonschema behind it for the reasons."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.is_valid: Check = _compiled(schema)

    @cached_property
    def explainer(self) -> Draft202012Validator:
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema)

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.is_valid(instance):
            return iter(())
        return self.explainer.iter_errors(instance)


def _compiled(schema: Mapping[str, Any]) -> Check:
    try:
        return compile_schema(schema)
    except Unsupported:  # pragma: no cover - tests/test_fastschema.py compiles every schema
        from jsonschema import Draft202012Validator

        return Draft202012Validator(schema).is_valid


# Compiled checks of schemas handed in as jsonschema validators, by the schema's identity
# (the schema is kept with its check, so the identity stays its own).
_CHECKS: dict[int, tuple[Any, Check]] = {}


def _check_of(validator: Validator) -> Check:
    if isinstance(validator, SchemaValidator):
        return validator.is_valid
    schema = validator.schema
    known = _CHECKS.get(id(schema))
    if known is None or known[0] is not schema:
        known = (schema, _compiled(schema))
        _CHECKS[id(schema)] = known
    return known[1]


@cache
def workflow_validator() -> SchemaValidator:
    from crmflow.rules.schema import workflow_schema

    return SchemaValidator(workflow_schema())


@cache
def config_validator() -> SchemaValidator:
    from crmflow.rules.schema import config_schema

    return SchemaValidator(config_schema())


def _fits(value: Any, json_type: str | list[str]) -> bool:
    types = [json_type] if isinstance(json_type, str) else json_type
    for t in types:
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        expected = _JSON_TYPES.get(t)
        if expected is not None and type(value) is expected:
            return True
    return False


class _Issue:
    __slots__ = ("code", "key", "message", "path")

    def __init__(self, path: tuple[Any, ...], code: str, message: str, key: bool = False) -> None:
        self.path, self.code, self.message, self.key = path, code, message, key


def _kind_of_mapping(schema: dict[str, Any]) -> str:
    keys = set(schema.get("properties", {}))
    if {"eq", "gt", "changed"} <= keys:
        return "operator"
    if {"notify", "webhook"} <= keys:
        return "action type or key"
    if {"on", "schedule"} <= keys:
        return "trigger key"
    return "key"


def _discriminators(branches: list[Any]) -> list[str] | None:
    """The keys of a `oneOf: [{required: [k]}, ...]` choice, or None for other shapes."""
    keys = []
    for branch in branches:
        if (
            not isinstance(branch, dict)
            or set(branch) != {"required"}
            or len(branch["required"]) != 1
        ):
            return None
        keys.append(branch["required"][0])
    return keys


def _reduce(error: ValidationError) -> list[_Issue]:
    path = tuple(error.absolute_path)
    where = format_path(path)
    here = f"{where}: " if where else ""
    value = error.instance
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}

    if kind in ("oneOf", "anyOf"):
        branches = error.validator_value
        keys = _discriminators(branches)
        if keys is not None and isinstance(value, dict):
            present = [k for k in keys if k in value]
            if len(present) > 1:
                return [
                    _Issue(
                        path,
                        "CF104",
                        f"{here}takes exactly one of {', '.join(keys)}; found {', '.join(present)}",
                    )
                ]
            return [_Issue(path, "CF102", f"{here}needs one of: {', '.join(keys)}")]
        return _reduce_choice(error, path, here)
    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        what = _kind_of_mapping(schema)
        extra = [k for k in value if k not in known]
        issues = []
        for k in extra:
            hint = suggest(k, known)
            if not hint and what == "action type or key":
                # Not a typo of anything known: perhaps an action from a package that is
                # not installed here (crmflow.actions entry points).
                hint = " (an action of a package that is not installed here?)"
            issues.append(
                _Issue((*path, k), "CF101", f"{here}unknown {what} {k!r}{hint}", key=True)
            )
        return issues
    if kind == "required":
        missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
        return [_Issue(path, "CF102", f"{here}missing required key {k!r}") for k in missing]
    if kind == "dependentRequired":
        for key, needed in error.validator_value.items():
            if key in value:
                lacking = [n for n in needed if n not in value]
                if lacking:
                    return [
                        _Issue(
                            (*path, key),
                            "CF104",
                            f"{here}{key!r} only goes with {', '.join(lacking)}",
                            key=True,
                        )
                    ]
    if kind == "type":
        return [
            _Issue(
                path,
                "CF103",
                f"{here}must be {_type_words(error.validator_value)}, not {type_name(value)}",
            )
        ]
    if kind in ("enum", "const"):
        allowed = error.validator_value if kind == "enum" else [error.validator_value]
        shown = ", ".join(str(a) for a in allowed)
        hint = suggest(str(value), [str(a) for a in allowed]) if isinstance(value, str) else ""
        return [_Issue(path, "CF104", f"{here}{value!r} is not one of: {shown}{hint}")]
    if kind == "pattern":
        what = _pattern_words(error.validator_value, schema)
        return [_Issue(path, "CF104", f"{here}{value!r} is not valid: expected {what}")]
    if kind == "propertyNames":
        return [_Issue(path, "CF104", f"{here}{error.instance!r} is not a field path")]
    if kind in ("minItems", "minProperties"):
        return [_Issue(path, "CF104", f"{here}must not be empty")]
    if kind == "uniqueItems":
        return [_Issue(path, "CF104", f"{here}has repeated items")]
    return [_Issue(path, "CF104", f"{here}{error.message}")]


def _pattern_words(pattern: str, schema: dict[str, Any]) -> str:
    from crmflow import durations
    from crmflow.rules.schema import CALENDAR_COUNTRY, CALENDAR_HOURS, ID_PATTERN
    from crmflow.rules.triggers import TIME_PATTERN

    known = {
        durations.DURATION_PATTERN: "a duration such as 30s, 15m, 2h, 14d, 2w, 1y, 3bd, 4bh "
        "or P14D",
        durations.OFFSET_PATTERN: "a signed offset such as -7d, +2h or 1y",
        ID_PATTERN: "lowercase letters, digits, - and _ (starting with a letter or digit)",
        TIME_PATTERN: "a time of day as HH:MM",
        CALENDAR_COUNTRY: "a two-letter country code such as DE or US",
        CALENDAR_HOURS: "working hours as HH:MM-HH:MM, e.g. 09:00-17:00",
    }
    return known.get(pattern) or schema.get("description") or f"the pattern {pattern}"


def _type_words(types: str | list[str]) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }
    items = [types] if isinstance(types, str) else types
    return " or ".join(names.get(t, t) for t in items)


def _reduce_choice(error: ValidationError, path: tuple[Any, ...], here: str) -> list[_Issue]:
    branches: list[Any] = error.validator_value
    value = error.instance
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)

    def unfit(index: int) -> bool:
        # A branch whose top-level type does not match the value is not what was meant.
        for sub in by_branch.get(index, []):
            if not sub.relative_path and sub.validator == "type":
                return True
        branch = branches[index]
        return isinstance(branch, dict) and "$ref" in branch and not by_branch.get(index)

    candidates = [i for i in range(len(branches)) if i in by_branch and not unfit(i)]
    if len(candidates) == 1:
        issues: list[_Issue] = []
        for sub in by_branch[candidates[0]]:
            issues.extend(_reduce(sub))
        return issues
    if not candidates:
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        words = _branch_words(branches)
        has_ref = any(isinstance(b, dict) and "$ref" in b for b in branches)
        expected = (description or words) if has_ref or not words else words
        return [
            _Issue(
                path, "CF103", f"{here}{type_name(value)} is not allowed here: expected {expected}"
            )
        ]
    subs = [e for i in candidates for e in by_branch[i]]
    if all(not e.relative_path and e.validator == "pattern" for e in subs):
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        return [
            _Issue(
                path,
                "CF104",
                f"{here}{value!r} is not valid: expected {description or 'another form'}",
            )
        ]
    from jsonschema.exceptions import best_match

    chosen = best_match([e for i in candidates for e in by_branch[i]])
    return (
        _reduce(chosen) if chosen is not None else [_Issue(path, "CF104", f"{here}{error.message}")]
    )


def _branch_words(branches: list[Any]) -> str:
    words = []
    for branch in branches:
        if isinstance(branch, dict) and "field" in branch.get("properties", {}):
            words.append("{field: another_field}")
        elif isinstance(branch, dict) and "type" in branch:
            words.append(_type_words(branch["type"]))
        elif isinstance(branch, dict) and "$ref" in branch:
            words.append(branch["$ref"].rsplit("/", 1)[-1].replace("_", " "))
        elif isinstance(branch, dict) and "const" in branch:
            words.append(repr(branch["const"]))
    return " or ".join(words) or "another form"


def reduced_paths(doc: Document) -> list[tuple[Any, ...]]:
    """Where the schema refuses a workflow, as precisely as the findings say it: the
    parts lint leaves out of its semantic checks."""
    validator = workflow_validator()
    return [issue.path for error in validator.iter_errors(doc.data) for issue in _reduce(error)]


def schema_findings(
    doc: Document, validator: Validator | None = None, workflow: str | None = None
) -> list[Finding]:
    """Every schema error of a document as findings at the position they concern."""
    validator = validator or workflow_validator()
    if _check_of(validator)(doc.data):
        return []
    if workflow is None and isinstance(doc.data, dict) and isinstance(doc.data.get("id"), str):
        workflow = doc.data["id"]
    seen: set[tuple[Any, ...]] = set()
    findings = []
    issues = [issue for error in validator.iter_errors(doc.data) for issue in _reduce(error)]
    # "needs one of" is noise next to a misspelt key that was probably the one meant.
    misspelt = {
        i.path[:-1]
        for i in issues
        if i.code == "CF101" and ("did you mean" in i.message or "action type or key" in i.message)
    }
    for issue in issues:
        if issue.code == "CF102" and "needs one of" in issue.message and issue.path in misspelt:
            continue
        location = doc.locate(issue.path, key=issue.key)
        signature = (location, issue.message)
        if signature in seen:
            continue
        seen.add(signature)
        findings.append(Finding(issue.code, "error", issue.message, location, workflow))
    findings.sort(key=lambda f: f.sort_key)
    return findings
