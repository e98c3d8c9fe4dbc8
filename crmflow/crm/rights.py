"""The database rights the workflows need, asked of the CRM before the daemon starts.

A role without one of them would otherwise meet it as a failed action now and then, or
(triggers mode) as an error in the middle of start; asked first, each missing right is
one line that names the right, the object and the workflow that needs it.

Only PostgreSQL has rights to ask about; a SQLite CRM needs its file (and its folder,
for the journal) writable when workflows write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from crmflow.config import sqlite_file
from crmflow.rules.entities import EntityModel
from crmflow.rules.workflow import Workflow

APPLIED_TABLE = "crmflow_applied"


@dataclass(frozen=True, order=True)
class Need:
    """A right on a table (or, for CREATE, on a schema) and who needs it."""

    obj: str
    right: str
    why: str


def _literal(value: object) -> str | None:
    return value if isinstance(value, str) and "{" not in value else None


def needs_of(
    workflows: Iterable[Workflow], model: EntityModel, watched: Iterable[str], *, triggers: bool
) -> list[Need]:
    """What the enabled workflows need: SELECT on what is watched, INSERT, UPDATE or
    DELETE on what their actions write, and CREATE and TRIGGER for triggers mode."""
    found: dict[tuple[str, str], str] = {}

    def need(entity: str | None, right: str, why: str) -> None:
        definition = model.get(entity) if entity else None
        if definition is not None:
            found.setdefault((definition.table, right), why)

    for entity in watched:
        need(entity, "SELECT", "its changes are watched")
        if triggers:
            need(entity, "TRIGGER", "change_capture: triggers logs its changes")
    for workflow in workflows:
        if not workflow.enabled:
            continue
        for action in workflow.actions:
            why = f"workflow {workflow.id}: {action.type}"
            params = action.raw if isinstance(action.raw, dict) else {}
            if action.type == "create":
                need(_literal(params.get("entity")), "INSERT", why)
            elif action.type == "update":
                target = workflow.entity
                relation = _literal(params.get("target"))
                if relation:
                    info = model.resolve(workflow.entity, relation)
                    target = info.entity if info.ok and info.relation else ""
                need(target, "UPDATE", why)
            elif action.type == "set_stage":
                need(workflow.entity, "UPDATE", why)
            elif action.type == "delete":
                definition = model.get(workflow.entity)
                soft = definition is not None and definition.deleted is not None
                need(workflow.entity, "UPDATE" if soft else "DELETE", why)
            elif action.type in ("notify", "warn"):
                via = params.get("via") or ["inbox"]
                if action.type == "warn" or "inbox" in (via if isinstance(via, list) else [via]):
                    need("notification", "INSERT", why)
                if action.type == "notify":
                    need("user", "SELECT", why + " (its recipients)")
    return [Need(obj, right, why) for (obj, right), why in sorted(found.items())]


def _split(qualified: str) -> tuple[str | None, str]:
    schema, _, name = qualified.rpartition(".")
    return schema or None, name


def missing(engine: Engine, needs: list[Need], *, triggers: bool) -> list[str]:
    """One line for each right the database refuses the role crmflow connects as."""
    if engine.dialect.name == "sqlite":
        return _sqlite_missing(engine, needs)
    if engine.dialect.name != "postgresql":
        return []
    lines: list[str] = []
    with engine.connect() as conn:
        role = conn.execute(text("SELECT current_user")).scalar_one()
        schemas: set[str] = set()
        for need in needs:
            schema, name = _split(need.obj)
            qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
            try:
                allowed = conn.execute(
                    text("SELECT has_table_privilege(:t, :r)"), {"t": qualified, "r": need.right}
                ).scalar_one()
            except SQLAlchemyError:
                conn.rollback()
                continue  # no such table: where it is used, that is its own error
            if not allowed:
                lines.append(
                    f"crm: the role {role} has no {need.right} on {need.obj} ({need.why}): "
                    f"GRANT {need.right} ON {need.obj} TO {role}"
                )
            schemas.add(schema or "public")
        if triggers:
            for schema in sorted(schemas or {"public"}):
                allowed = conn.execute(
                    text("SELECT has_schema_privilege(:s, 'CREATE')"), {"s": schema}
                ).scalar_one()
                if not allowed:
                    lines.append(
                        f"crm: the role {role} has no CREATE on schema {schema} "
                        "(change_capture: triggers makes crmflow_changelog and a trigger "
                        f"function there): GRANT CREATE ON SCHEMA {schema} TO {role}"
                    )
    return lines


def _sqlite_missing(engine: Engine, needs: list[Need]) -> list[str]:
    path = sqlite_file(str(engine.url))
    writes = [n for n in needs if n.right in ("INSERT", "UPDATE", "DELETE")]
    if path is None or not writes or not path.exists():
        return []
    lines = []
    first = writes[0]
    if not os.access(path, os.W_OK):
        lines.append(
            f"crm: {path} is not writable by this user ({first.why} writes to {first.obj})"
        )
    folder = Path(path).resolve().parent
    if not os.access(folder, os.W_OK | os.X_OK):
        lines.append(
            f"crm: the folder {folder} is not writable by this user (SQLite keeps its "
            f"journal beside {path.name}; {first.why} writes to {first.obj})"
        )
    return lines


def require(
    engine: Engine,
    workflows: Iterable[Workflow],
    model: EntityModel,
    watched: Iterable[str],
    *,
    triggers: bool,
) -> None:
    """ConfigErrors naming every right the workflows need and the role lacks."""
    from crmflow.errors import ConfigError, ConfigErrors

    lines = missing(
        engine, needs_of(workflows, model, watched, triggers=triggers), triggers=triggers
    )
    if lines:
        errors = [ConfigError(line) for line in lines]
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]


def applied_hint(engine: Engine) -> str:
    """What to do when crmflow_applied cannot be made, for the at-least-once warning."""
    if engine.dialect.name != "postgresql":
        return ""
    return (
        f" (create {APPLIED_TABLE} as the database owner and grant SELECT, INSERT on it, "
        "or grant CREATE on the schema: see Production in the README)"
    )
