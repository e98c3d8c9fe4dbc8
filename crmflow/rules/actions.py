"""Action types: the keys each one takes, and what a dry run knows of its outcome.

An action in a workflow is a mapping with exactly one type key (`notify: {...}`) plus
the common keys `id`, `delay`, `if` and `description`. Carrying actions out against a
CRM lives in the executor; this module is the vocabulary both share.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from crmflow import durations
from crmflow.rules.registry import ACTIONS, ActionDef

STRING = {"type": "string"}
RECIPIENT = {"type": ["string", "integer"]}
RECIPIENTS = {"anyOf": [RECIPIENT, {"type": "array", "items": RECIPIENT, "minItems": 1}]}
DEFAULT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _obj(
    properties: dict[str, Any], required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


def generate_code(length: int, alphabet: str, rng: random.Random) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _code_output(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    length = int(params.get("length") or 8)
    alphabet = str(params.get("alphabet") or DEFAULT_ALPHABET)
    return {"code": generate_code(length, alphabet, rng)}


def _register(definition: ActionDef) -> None:
    ACTIONS.add(definition.name, definition)


_register(
    ActionDef(
        "notify",
        "message to CRM users: an inbox row and/or an e-mail",
        _obj(
            {
                "to": {
                    **RECIPIENTS,
                    "description": "user ids, owner, actor, role:NAME, e-mail addresses",
                },
                "via": {
                    "description": "email, inbox (default: inbox)",
                    "anyOf": [
                        {"enum": ["email", "inbox"]},
                        {
                            "type": "array",
                            "items": {"enum": ["email", "inbox"]},
                            "minItems": 1,
                            "uniqueItems": True,
                        },
                    ],
                },
                "subject": STRING,
                "body": STRING,
                "link": {"type": "string", "description": "a link shown with the message"},
            },
            ["to", "subject"],
        ),
    )
)

_register(
    ActionDef(
        "email",
        "e-mail to anyone (contacts, customers)",
        _obj(
            {
                "to": {**RECIPIENTS, "description": "e-mail addresses (templates allowed)"},
                "cc": RECIPIENTS,
                "bcc": RECIPIENTS,
                "reply_to": STRING,
                "subject": STRING,
                "body": {"type": "string", "description": "plain text body"},
                "html": {"type": "string", "description": "HTML body (values are escaped)"},
                "attach": {
                    "description": 'documents to attach, e.g. "{{ steps.doc }}" (the '
                    "output of a document action), or a list of them",
                },
            },
            ["to", "subject"],
        ),
        html_keys=frozenset({"html"}),
    )
)

_register(
    ActionDef(
        "create",
        "a new record (task, activity, deal, contact...)",
        _obj(
            {
                "entity": {"type": "string", "description": "the entity of the new record"},
                "values": {"type": "object", "description": "field values of the new record"},
            },
            ["entity", "values"],
        ),
        dry_output=lambda params, rng: {"id": None},
        changes_records=True,
    )
)

_register(
    ActionDef(
        "update",
        "change fields of the current record or related records",
        _obj(
            {
                "values": {"type": "object", "minProperties": 1},
                "target": {
                    "type": "string",
                    "description": "a relation path (company, contacts); default the record itself",
                },
            },
            ["values"],
        ),
        changes_records=True,
    )
)

_register(
    ActionDef(
        "set_stage",
        "move the record in its pipeline",
        _obj(
            {
                "stage": STRING,
                "allow_backward": {"type": "boolean", "description": "default false"},
            },
            ["stage"],
        ),
        shorthand="stage",
        changes_records=True,
    )
)

DOCUMENT_MAX_BYTES = 1024 * 1024


def document_params(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A document's parameters with its template's text: `html` for an .html template
    (its values are escaped), `markdown` otherwise. ValueError says what is wrong."""
    name = params.get("template")
    if not isinstance(name, str):
        raise ValueError("document: template names a file")
    base = folder.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"document: {name} is outside the workflow's folder")
    try:
        if path.stat().st_size > DOCUMENT_MAX_BYTES:
            raise ValueError(f"document: {name} is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"document: cannot read {name}: {reason}") from None
    html = path.name.endswith((".html", ".htm", ".html.j2", ".htm.j2"))
    return {**params, ("html" if html else "markdown"): text}


def _document_output(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    html = "html" in params
    return {
        "name": params.get("name") or Path(str(params.get("template", "document"))).name,
        "content_type": "text/html" if html else "text/markdown",
        "content": str(params.get("html" if html else "markdown") or ""),
    }


_register(
    ActionDef(
        "document",
        "a document rendered from a template file beside the workflow (HTML or Markdown), "
        "kept in the history and usable by later actions (email attach: steps.<id>)",
        _obj(
            {
                "template": {
                    "type": "string",
                    "description": "the template file, relative to the workflow file "
                    "(.html or .html.j2: HTML, values escaped; else Markdown)",
                },
                "name": {
                    "type": "string",
                    "description": "the document's file name (default: the template's)",
                },
            },
            ["template"],
        ),
        dry_output=_document_output,
        html_keys=frozenset({"html"}),
        prepare=document_params,
    )
)

_register(
    ActionDef(
        "sms",
        "text message through the configured gateway (sms: in crmflow.yaml)",
        _obj(
            {
                "to": {
                    **RECIPIENTS,
                    "description": "phone numbers (+4930...), user ids, owner, actor, "
                    "role:NAME (users' phone field)",
                },
                "text": {"type": "string", "description": "the message"},
            },
            ["to", "text"],
        ),
    )
)

_register(
    ActionDef(
        "webhook",
        "HTTP call to another system",
        _obj(
            {
                "url": {"type": "string", "minLength": 1},
                "method": {"enum": ["POST", "PUT", "PATCH", "DELETE", "GET"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "JSON body (default: the record)"},
            },
            ["url"],
        ),
    )
)

_register(
    ActionDef(
        "delete",
        "delete the current record",
        {
            "anyOf": [{"type": "null"}, {"const": True}, _obj({})],
            "description": "takes no keys: `- delete:`",
        },
        changes_records=True,
    )
)

_register(
    ActionDef(
        "generate_code",
        "a random code, output steps.<id>.code",
        {
            "anyOf": [
                {"type": "null"},
                _obj(
                    {
                        "length": {"type": "integer", "minimum": 1, "maximum": 256},
                        "alphabet": {"type": "string", "minLength": 2},
                    }
                ),
            ],
        },
        dry_output=_code_output,
    )
)

_register(
    ActionDef(
        "warn",
        "a warning to the actor (inbox) and in eval output",
        _obj(
            {
                "message": {"type": "string", "minLength": 1},
            },
            ["message"],
        ),
        shorthand="message",
    )
)

_register(
    ActionDef(
        "wait",
        "later actions wait until `until` holds or `for` has passed",
        _obj(
            {
                "for": {"type": "string", "pattern": durations.DURATION_PATTERN},
                "until": {"$ref": "#/$defs/conditions"},
                "on_met": {"enum": ["continue", "stop"]},
                "on_timeout": {"enum": ["continue", "stop"]},
            },
            anyOf=[{"required": ["for"]}, {"required": ["until"]}],
        ),
        templated=False,
    )
)

# Action types whose effect is a write to the CRM database or nothing outside crmflow:
# they never wait on another host (the daemon does them as a change is handled).
IN_DATABASE = frozenset(
    {"create", "update", "set_stage", "delete", "generate_code", "warn", "document"}
)

COMMON_KEYS: dict[str, dict[str, Any]] = {
    "id": {
        "type": "string",
        "pattern": STEP_ID_PATTERN,
        "description": "names the action's output for later ones: steps.<id>",
    },
    "delay": {
        "type": "string",
        "pattern": durations.DURATION_PATTERN,
        "description": "fire this long after the triggering event",
    },
    "if": {"$ref": "#/$defs/conditions", "description": "an extra condition for this action"},
    "within": {
        "enum": ["business_hours"],
        "description": "move the due time to the next working moment of the configured "
        "calendar (after any delay)",
    },
    "digest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["every"],
        "description": "notify and email only, `{every, at, subject}`: collect the messages "
        "per recipient and send them together, one message listing all, once per `every` "
        "(days or weeks, 1w on Mondays; or 1m to 23h, counted from `at` each day) at `at` "
        "(local HH:MM, default 08:00); `subject` replaces the workflow's name before the "
        "count of items",
        "properties": {
            "every": {
                "type": "string",
                "pattern": durations.DURATION_PATTERN,
                "description": "how often: days or weeks (1d, 1w: weekly on Mondays), or "
                "minutes to hours within a day (30m, 4h: counted from `at` each day)",
            },
            "at": {
                "type": "string",
                "pattern": "^[0-2][0-9]:[0-5][0-9]$",
                "description": "local time of the sending, HH:MM (default 08:00)",
            },
            "subject": {
                "type": "string",
                "description": "the digest's subject, followed by the count of items "
                "(default: the workflow's name)",
            },
        },
    },
    "description": {"type": "string"},
}


def action_type(spec: dict[str, Any]) -> str:
    """The one type key of a (schema-valid) action mapping."""
    for key in spec:
        if key in ACTIONS:
            return key
    raise KeyError("action has no type")


def normalise_params(definition: ActionDef, value: Any) -> dict[str, Any]:
    """An action's parameters as a mapping, short forms expanded."""
    if value is None or value is True:
        return {}
    if definition.shorthand and not isinstance(value, dict):
        return {definition.shorthand: value}
    return dict(value)
