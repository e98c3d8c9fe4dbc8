"""The JSON Schemas (draft 2020-12), generated from the registry.

`schemas/workflow.schema.json`, `schemas/config.schema.json` and `schemas/test.schema.json`
in the repository are this module's output, committed so editors can use them; a test
fails when they drift. Importing this module is cheap: the registry's fillers are imported
only when the workflow schema is built (`vocabulary()`), so checking crmflow.yaml against
its schema never loads the workflow language.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from crmflow import durations
from crmflow.rules.registry import ACTIONS, OPERATORS, TRIGGERS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
SCALAR = {"type": ["string", "number", "boolean", "null"]}


def vocabulary() -> None:
    """Fill the registries: import the modules that register operators, triggers, actions.

    Here rather than in crmflow.rules.registry, which those modules import: the registry stays
    a plain table that knows none of its fillers.
    """
    import crmflow.rules.actions
    import crmflow.rules.operators
    import crmflow.rules.triggers  # noqa: F401
    from crmflow.rules import plugins

    plugins.load()


def _duration(description: str, signed: bool = False) -> dict[str, Any]:
    pattern = durations.OFFSET_PATTERN if signed else durations.DURATION_PATTERN
    return {"type": "string", "pattern": pattern, "description": description}


def _config_duration(description: str) -> dict[str, Any]:
    """A duration in crmflow.yaml: `30s`, `5m`, or a bare number of seconds."""
    return {
        "anyOf": [
            {"type": "string", "pattern": durations.DURATION_PATTERN},
            {"type": "number", "minimum": 0},
        ],
        "description": description + "; a bare number is seconds",
    }


def _trigger_schema() -> dict[str, Any]:
    from crmflow.rules.triggers import OWNED_KEYS

    properties: dict[str, Any] = {}
    for _name, definition in TRIGGERS.items():
        properties.update(definition.properties)
    kinds = TRIGGERS.names()
    return {
        "type": "object",
        "description": "one of: " + "; ".join(f"{k} ({TRIGGERS[k].doc})" for k in kinds),
        "properties": properties,
        "additionalProperties": False,
        "oneOf": [{"required": [kind]} for kind in kinds],
        "dependentRequired": {key: [owner] for key, owner in OWNED_KEYS.items()},
    }


def _action_schema() -> dict[str, Any]:
    from crmflow.rules.actions import COMMON_KEYS

    properties: dict[str, Any] = dict(COMMON_KEYS)
    for name, definition in ACTIONS.items():
        schema = dict(definition.schema)
        schema.setdefault("description", definition.doc)
        if definition.shorthand:
            schema = {
                "description": definition.doc,
                "anyOf": [{"type": "string"}, definition.schema],
            }
        properties[name] = schema
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "oneOf": [{"required": [name]} for name in ACTIONS.names()],
    }


def _operators_schema() -> dict[str, Any]:
    properties = {}
    for name, definition in OPERATORS.items():
        schema = dict(definition.schema)
        schema["description"] = definition.doc
        properties[name] = schema
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
    }


@cache
def workflow_schema() -> dict[str, Any]:
    """The JSON Schema of one workflow document."""
    vocabulary()
    return {
        "$schema": DIALECT,
        "$id": "https://crmflow.dev/schemas/workflow.schema.json",
        "title": "crmflow workflow",
        "description": "When something happens to a CRM record and conditions hold, do actions.",
        "type": "object",
        "required": ["id", "entity", "trigger", "actions"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "pattern": ID_PATTERN,
                "description": "unique id: lowercase letters, digits, - and _",
            },
            "name": {"type": "string", "description": "human title"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean", "description": "default true"},
            "entity": {"type": "string", "minLength": 1, "description": "the record type"},
            "trigger": {"$ref": "#/$defs/trigger"},
            "conditions": {"$ref": "#/$defs/conditions"},
            "actions": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/action"}},
            "cooldown": _duration("do not fire again for the same record within this span"),
            "limit": _LIMIT,
            "mode": {
                "enum": list(RUN_MODES),
                "description": "what a new run does while an earlier run for the same record "
                "still has actions waiting: parallel (default: runs beside it), single (the "
                "new run is dropped), restart (the earlier run's waiting actions are "
                "cancelled), queued (the new run starts when the earlier one ends)",
            },
            "max_runs": {
                "type": "integer",
                "minimum": 1,
                "description": "queued/parallel: at most this many runs per record, waiting "
                "or queued; a run past it is dropped (in the history)",
            },
            "run_as": {
                "type": ["integer", "string"],
                "description": "user id recorded as updated_by of crmflow's writes",
            },
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "$defs": {
            "trigger": _trigger_schema(),
            "conditions": {
                "description": "a condition, or a list of conditions that must all hold",
                "anyOf": [
                    {"$ref": "#/$defs/condition"},
                    {"type": "array", "items": {"$ref": "#/$defs/condition"}},
                ],
            },
            "condition": {
                "type": "object",
                "description": "all/any/not, or field paths mapped to a value or operators",
                "minProperties": 1,
                "properties": {
                    "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
                    "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
                    "not": {"$ref": "#/$defs/condition"},
                },
                "propertyNames": {
                    "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
                },
                "additionalProperties": {"$ref": "#/$defs/field_test"},
            },
            "field_test": {
                "description": "a plain value (equality) or a mapping of operators",
                "anyOf": [SCALAR, {"$ref": "#/$defs/operators"}],
            },
            "operators": _operators_schema(),
            "action": _action_schema(),
        },
    }


RUN_MODES = ("parallel", "single", "restart", "queued")
CALENDAR_COUNTRY = "^[A-Z]{2}$"
CALENDAR_HOURS = "^\\d{2}:\\d{2}-\\d{2}:\\d{2}$"
# A blast-radius cap: a workflow that fires more often pauses itself (crmflow.engine.caps).
_LIMIT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["max"],
    "description": "at most this many runs within `per`; past it the workflow pauses itself, "
    "its actions held, until `crmflow resume WORKFLOW`",
    "properties": {
        "max": {"type": "integer", "minimum": 1, "description": "runs allowed within per"},
        "per": {
            "type": "string",
            "pattern": durations.DURATION_PATTERN,
            "description": "the span runs are counted in (default 1h)",
        },
    },
}
# Working time (crmflow.workdays): in crmflow.yaml, and in a test file for its cases.
_CALENDAR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "working time: business days (3bd) and hours (4bh) in "
    "durations, and within: business_hours on actions",
    "properties": {
        "country": {
            "type": "string",
            "pattern": "^[A-Z]{2}$",
            "description": "ISO 3166 country whose public holidays are days off",
        },
        "subdivision": {
            "type": "string",
            "description": "state or region for its own holidays, e.g. BY",
        },
        "hours": {
            "type": "string",
            "pattern": "^\\d{2}:\\d{2}-\\d{2}:\\d{2}$",
            "description": "working hours, local time (default 09:00-17:00)",
        },
        "weekdays": {
            "type": "array",
            "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "uniqueItems": True,
            "minItems": 1,
            "description": "working days (default mon to fri)",
        },
    },
}


@cache
def config_schema() -> dict[str, Any]:
    """The JSON Schema of crmflow.yaml."""
    identifier = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
    qualified = {
        "type": "string",
        "pattern": r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$",
        "description": "a table, optionally schema-qualified (crm.tasks, PostgreSQL)",
    }
    from crmflow.rules.entities import FIELD_TYPES

    relation = {
        "type": "object",
        "required": ["entity"],
        "additionalProperties": False,
        "properties": {
            "entity": {"type": "string"},
            "key": identifier,
            "foreign_key": identifier,
            "where": {"type": "object", "additionalProperties": SCALAR},
            "through": {
                "type": "object",
                "description": "a join table: its `key` column holds our id, its "
                "`target_key` column the related record's id",
                "required": ["table", "key", "target_key"],
                "additionalProperties": False,
                "properties": {
                    "table": qualified,
                    "key": identifier,
                    "target_key": identifier,
                    "where": {"type": "object", "additionalProperties": SCALAR},
                },
            },
        },
        "oneOf": [{"required": ["key"]}, {"required": ["foreign_key"]}, {"required": ["through"]}],
    }
    entity = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "table": qualified,
            "id": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "generate": {
                        "enum": ["uuid"],
                        "description": "rows crmflow creates get a uuid4 string id (the "
                        "CRM's application makes ids, not its database)",
                    }
                },
            },
            "columns": {"type": "object", "additionalProperties": identifier},
            "defaults": {
                "type": "object",
                "description": "column values for rows crmflow creates, unless an action "
                "sets them (columns the CRM needs that its database gives no default); "
                "a `lookup` reads the value from a table once, e.g. Odoo's ir_model id",
                "propertyNames": identifier,
                "additionalProperties": {
                    "anyOf": [
                        SCALAR,
                        {
                            "type": "object",
                            "required": ["lookup"],
                            "additionalProperties": False,
                            "properties": {
                                "lookup": {
                                    "type": "object",
                                    "required": ["table", "where"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "table": qualified,
                                        "column": identifier,
                                        "where": {
                                            "type": "object",
                                            "propertyNames": identifier,
                                            "additionalProperties": SCALAR,
                                        },
                                    },
                                }
                            },
                        },
                    ]
                },
            },
            "fields": {"type": "object", "additionalProperties": {"enum": list(FIELD_TYPES)}},
            "deleted": {
                "type": "object",
                "description": "soft delete: the row is deleted when `column` holds `value` "
                "(default true), or, with not_null, when `column` is set at all",
                "required": ["column"],
                "additionalProperties": False,
                "properties": {
                    "column": identifier,
                    "value": SCALAR,
                    "not_null": {"type": "boolean"},
                },
                "not": {"required": ["value", "not_null"]},
            },
            "relations": {"type": "object", "additionalProperties": relation},
            "pipeline": {
                "type": "object",
                "required": ["field", "stages"],
                "additionalProperties": False,
                "properties": {
                    "lookup": {
                        "type": "object",
                        "description": "stages in a table of their own: `key` is our column "
                        "holding a stage's `id`; `field` then reads and writes the stage's "
                        "`name` (of `language`, when names are translated jsonb)",
                        "required": ["table", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "table": qualified,
                            "key": identifier,
                            "id": identifier,
                            "name": identifier,
                            "language": {"type": "string"},
                        },
                    },
                    "field": {"type": "string"},
                    "stages": {"type": "array", "items": {"type": "string"}},
                    "closed": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    }
    email = {
        "type": "object",
        "required": ["transport"],
        "properties": {
            "transport": {"enum": ["maildir", "smtp"]},
            "path": {"type": "string", "description": "maildir folder"},
            "host": {"type": "string"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "from": {"type": "string"},
            "username": {"type": "string"},
            "password_env": {"type": "string", "description": "environment variable"},
            "starttls": {"type": "boolean"},
            "ssl": {"type": "boolean"},
            "ca_file": {"type": "string", "description": "extra CA certificates (PEM)"},
            "timeout": _config_duration("connection timeout"),
            "redirect_to": {"type": "string", "description": "send every e-mail here (staging)"},
            "per_minute": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
        "allOf": [
            {
                "if": {"properties": {"transport": {"const": "smtp"}}},
                "then": {"required": ["host"]},
            },
        ],
    }
    return {
        "$schema": DIALECT,
        "$id": "https://crmflow.dev/schemas/config.schema.json",
        "title": "crmflow configuration (crmflow.yaml)",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "crm": {"type": "string", "description": "SQLAlchemy URL of the CRM database"},
            "state": {"type": "string", "description": "SQLAlchemy URL of crmflow's state"},
            "limit": {
                **_LIMIT,
                "description": "the cap of every workflow without its own limit:",
            },
            "admins": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "who is told when a workflow pauses itself: user ids, "
                "role:NAME or e-mail addresses",
            },
            "shadow_state": {
                "type": "string",
                "description": "SQLAlchemy URL of a shadow run's state (run --shadow; "
                "default: shadow.db beside a SQLite state)",
            },
            "rules": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "workflow folder(s), relative to this file",
            },
            "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Berlin"},
            "timestamp_format": {
                "type": "string",
                "minLength": 2,
                "description": "how the CRM writes text timestamps, as strftime in UTC, e.g. "
                "'%Y-%m-%d %H:%M:%S' (default ISO 8601 with milliseconds and Z)",
            },
            "poll_interval": _config_duration("how often the daemon polls the CRM"),
            "overlap": _config_duration(
                "how far back each poll re-reads, from the older of the watermark and the "
                "CRM database's clock (default 5m)"
            ),
            "delete_scan_interval": _config_duration("how often hard deletes are looked for"),
            "reconcile_interval": _config_duration(
                "how often a sweep compares every row with crmflow's snapshot, finding "
                "changes the polls missed (default 1h)"
            ),
            "change_capture": {"enum": ["polling", "triggers"]},
            "history_retention": _config_duration("how long history is kept (default 90d)"),
            "chain_depth": {"type": "integer", "minimum": 1, "maximum": 50},
            "calendar": _CALENDAR,
            "sms": {
                "type": "object",
                "additionalProperties": False,
                "required": ["gateway"],
                "description": "text messages (the sms action) through an HTTP gateway",
                "properties": {
                    "gateway": {
                        "type": "string",
                        "pattern": "^https?://",
                        "description": "the gateway's URL; each message is one POST",
                    },
                    "token_env": {
                        "type": "string",
                        "description": "environment variable with the gateway's token, sent "
                        "as Authorization: Bearer",
                    },
                    "from": {"type": "string", "description": "the sender number or name"},
                    "body": {
                        "type": "object",
                        "description": "the request body: a mapping whose strings are templates "
                        "over to, text, from and key (default: from, to, text, reference)",
                    },
                    "format": {
                        "enum": ["json", "form"],
                        "description": "how the body is sent (default json)",
                    },
                    "timeout": _config_duration("request timeout (default 10s)"),
                },
            },
            "roles": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
                "description": "the user roles of the CRM; when listed, lint checks each "
                "role:NAME recipient against them",
            },
            "lease": _config_duration(
                "how long a daemon's claim on a due action lasts (default 5m)"
            ),
            "email": email,
            "actions": {
                "type": "object",
                "additionalProperties": False,
                "description": "how many actions that wait on another host (webhooks, "
                "e-mail, sms) the daemon carries out at once",
                "properties": {
                    "concurrency": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "at most this many at once in all (default 32)",
                    },
                    "per_host": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "at most this many at once to one host (default 16); "
                        "below concurrency, a host that hangs leaves the others slots",
                    },
                },
            },
            "webhooks": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "allow": {"type": "array", "items": {"type": "string"}},
                    "secret_env": {"type": "string"},
                    "timeout": _config_duration("request timeout"),
                    "per_host_per_minute": {"type": "integer", "minimum": 1},
                    "proxy": {
                        "type": "string",
                        "minLength": 1,
                        "description": "an HTTP proxy every webhook goes through, as "
                        "http://HOST:PORT (user:password@ before the host from ${NAME} "
                        "variables when it asks for a login); webhooks.allow and the address "
                        "checks still apply to each target",
                    },
                },
            },
            "retry": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "max_attempts": {"type": "integer", "minimum": 1},
                    "max_age": _config_duration("give up retrying after this long"),
                    "base_delay": _config_duration("first retry delay"),
                    "max_delay": _config_duration(
                        "longest delay between two attempts (default 5m)"
                    ),
                },
            },
            "entities": {
                "type": "object",
                "propertyNames": identifier,
                "additionalProperties": entity,
            },
        },
    }


# The JSON Schema of a workflow test file (`*.test.yaml`, run by crmflow.commands.testing). It lives
# here, not beside the runner, so publishing and fingerprinting it loads no evaluator.
_EXPECT_RULE = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "matched": {"type": "boolean"},
                "reason": {"type": "string", "description": "a part of the reason"},
                "actions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "due": {
                                "type": ["string", "null"],
                                "description": "ISO time, now, or now+/-offset",
                            },
                            "params": {},
                            "error": {"type": ["string", "boolean"]},
                            "skipped": {"type": ["string", "boolean"]},
                            "after_wait": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    ],
}
# What the daemon did at due time in one step of a case (crmflow.daemon.rehearsal).
_OUTCOMES = [
    "fired",
    "cancelled",
    "failed",
    "skipped",
    "scheduled",
    "met",
    "timed_out",
    "ran",
    "queued",
    "dropped",
    "released",
    "held",
    "collected",
]
_EXPECT_DUE = {
    "type": "array",
    "description": "exactly what fell due in this step, in due order",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rule": {"type": "string"},
            "type": {
                "type": "string",
                "description": "the action type, or `schedule` for a cron occurrence",
            },
            "record": {"type": ["string", "integer"], "description": "the record's id"},
            "at": {"type": "string", "description": "ISO time, now, or now+/-offset"},
            "outcome": {
                "enum": _OUTCOMES,
                "description": "fired, cancelled, failed, skipped or scheduled (an action), "
                "met or timed_out (a wait), ran (a schedule occurrence), queued, dropped or "
                "released (a run, by its workflow's mode: type `run`), held (a workflow past "
                "its limit), collected (into a digest, sent later with the others)",
            },
            "reason": {"type": "string", "description": "a part of the daemon's reason"},
            "params": {"description": "a subset of the params it fired with"},
        },
    },
}
_EXPECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matched": {
            "type": "array",
            "items": {"type": "string"},
            "description": "exactly these workflows match",
        },
        "rules": {"type": "object", "additionalProperties": _EXPECT_RULE},
        "due": _EXPECT_DUE,
    },
}
_STEP = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "event": {"type": "object"},
        "change": {
            "type": "object",
            "minProperties": 1,
            "description": "fields to set on the record of the last event (or `of`): an "
            "`updated` event at the case's clock",
        },
        "of": {
            "type": "object",
            "required": ["entity", "id"],
            "additionalProperties": False,
            "properties": {"entity": {"type": "string"}, "id": {"type": ["string", "integer"]}},
            "description": "the record a `change` changes",
        },
        "actor": {
            "type": ["string", "integer", "null"],
            "description": "who makes the `change`",
        },
        "advance": _duration("move the case's clock this far, running what falls due"),
        "to": {
            "type": "string",
            "description": "move the case's clock to this ISO time or now+offset, running "
            "what falls due",
        },
        "expect": _EXPECT,
    },
    "oneOf": [
        {"required": ["event"]},
        {"required": ["change"]},
        {"required": ["advance"]},
        {"required": ["to"]},
    ],
    "dependentRequired": {"of": ["change"], "actor": ["change"]},
}
TEST_SCHEMA: dict[str, Any] = {
    "$schema": DIALECT,
    "$id": "https://crmflow.dev/schemas/test.schema.json",
    "title": "crmflow workflow tests",
    "type": "object",
    "required": ["cases"],
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "now": {"type": "string", "description": "ISO date-time every case runs at"},
        "timezone": {
            "type": "string",
            "description": "IANA time zone of every case (default: the configured one)",
        },
        "calendar": {
            **_CALENDAR,
            "description": "the working calendar of every case (default: the configured one)",
        },
        "cases": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "now": {"type": "string", "description": "ISO date-time the case runs at"},
                    "timezone": {
                        "type": "string",
                        "description": "IANA time zone of this case (default: the file's)",
                    },
                    "calendar": {
                        **_CALENDAR,
                        "description": "the working calendar of this case (default: the file's)",
                    },
                    "seed": {"type": "integer", "description": "seed for generated codes"},
                    "event": {"type": "object"},
                    "expect": _EXPECT,
                    "events": {"type": "array", "minItems": 1, "items": _STEP},
                },
                "oneOf": [{"required": ["event"]}, {"required": ["events"]}],
            },
        },
    },
}


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# Every published schema by name, as committed under schemas/<name>.schema.json.
PUBLISHED: dict[str, Callable[[], dict[str, Any]]] = {
    "workflow": workflow_schema,
    "config": config_schema,
    "test": lambda: TEST_SCHEMA,
}


def schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by name, as committed under schemas/."""
    return {name: build() for name, build in PUBLISHED.items()}
