"""The CRM entity model: entities, their fields, relations and pipelines.

One model serves lint (which field paths exist), the evaluator (stage order), and the CRM
layer (table and column names). The built-in model is data (`data/entities.yaml`); the
`entities` mapping of crmflow.yaml adapts it to an existing CRM schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import crmflow

COMMON_FIELDS = {
    "id": "integer",
    "created_at": "datetime",
    "updated_at": "datetime",
    "updated_by": "integer",
}
FIELD_TYPES = ("integer", "number", "string", "text", "boolean", "date", "datetime", "json")
TEMPORAL_TYPES = ("date", "datetime")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Relation:
    name: str
    entity: str
    key: str | None = None  # to-one: our column holding their id
    foreign_key: str | None = None  # to-many: their column holding our id
    where: tuple[tuple[str, Any], ...] = ()
    through: Through | None = None  # to-one through a join table

    @property
    def to_many(self) -> bool:
        return self.foreign_key is not None


@dataclass(frozen=True, slots=True)
class Through:
    """A join table between a record and a related one (SuiteCRM accounts_opportunities)."""

    table: str
    key: str  # its column holding our id
    target_key: str  # its column holding the related record's id
    where: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class SoftDelete:
    """How a deleted row is marked instead of removed."""

    column: str
    value: Any = True  # the row is deleted when the column holds this value...
    not_null: bool = False  # ...or, with not_null, when the column is set at all

    def is_deleted(self, record: dict[str, Any], field: str) -> bool:
        current = record.get(field)
        if self.not_null:
            return current is not None
        if isinstance(self.value, bool) or isinstance(current, bool):
            return current is not None and bool(current) == bool(self.value)
        return bool(current == self.value)


@dataclass(frozen=True, slots=True)
class StageTable:
    """Stages kept in a table of their own, the record holding a stage's id (Odoo's
    crm_lead.stage_id -> crm_stage): crmflow reads and writes stages by name."""

    table: str
    key: str  # our column holding the stage's id
    id: str = "id"
    name: str = "name"
    language: str | None = None  # a translated (jsonb) name: which language to read


@dataclass(frozen=True, slots=True)
class Pipeline:
    field: str
    stages: tuple[str, ...]
    closed: tuple[str, ...] = ()
    lookup: StageTable | None = None

    @property
    def all_stages(self) -> tuple[str, ...]:
        return self.stages + self.closed

    def is_backward(self, current: object, target: str) -> bool:
        """Whether moving from `current` to `target` goes back along the pipeline."""
        if target in self.closed or current not in self.stages or target not in self.stages:
            return False
        return self.stages.index(target) < self.stages.index(current)


@dataclass(frozen=True)
class Entity:
    name: str
    table: str
    fields: dict[str, str]  # field -> type
    columns: dict[str, str] = field(default_factory=dict)  # field -> column where they differ
    relations: dict[str, Relation] = field(default_factory=dict)
    pipeline: Pipeline | None = None
    deleted: SoftDelete | None = None
    # "uuid": crmflow makes the id of a row it creates (the CRM's application does, not
    # its database); None: the database assigns it.
    id_generate: str | None = None
    # Columns set on rows crmflow creates unless the action sets them (a CRM's NOT NULL
    # or list-view columns its database gives no default: SuiteCRM's alerts.is_read).
    defaults: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> str:
        return self.columns.get(name, name)

    def field_of(self, column: str) -> str:
        """The field a column is read as (a record's key)."""
        return next((f for f, c in self.columns.items() if c == column), column)

    def is_deleted(self, record: dict[str, Any]) -> bool:
        """Whether a record read from the table is soft-deleted."""
        if self.deleted is None:
            return False
        return self.deleted.is_deleted(record, self.field_of(self.deleted.column))


@dataclass(frozen=True)
class PathInfo:
    """What a dotted field path leads to, or why it leads nowhere."""

    ok: bool
    entity: str = ""
    field_type: str | None = None
    relation: Relation | None = None
    problem: str = ""
    problem_kind: str = ""  # "field" or "relation"


@dataclass(frozen=True)
class EntityModel:
    entities: dict[str, Entity]

    def __contains__(self, name: object) -> bool:
        return name in self.entities

    def get(self, name: str) -> Entity | None:
        return self.entities.get(name)

    def names(self) -> list[str]:
        return sorted(self.entities)

    def resolve(self, entity: str, path: str) -> PathInfo:
        """Follow `company.country` from `entity` through relations to a field."""
        current = self.entities.get(entity)
        if current is None:
            return PathInfo(
                False, entity, problem=f"unknown entity {entity!r}", problem_kind="relation"
            )
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            relation = current.relations.get(part)
            if relation is not None:
                target = self.entities.get(relation.entity)
                if target is None:
                    return PathInfo(
                        False,
                        current.name,
                        problem=(
                            f"relation {part!r} of {current.name} points to unknown entity "
                            f"{relation.entity!r}"
                        ),
                        problem_kind="relation",
                    )
                if last:
                    return PathInfo(True, target.name, relation=relation)
                current = target
                continue
            if part in current.fields:
                if last:
                    return PathInfo(True, current.name, field_type=current.fields[part])
                if current.fields[part] == "json":
                    return PathInfo(True, current.name, field_type="json")
                return PathInfo(
                    False,
                    current.name,
                    problem=(
                        f"{part!r} is a field of {current.name}, not a relation; "
                        f"it has no {parts[i + 1]!r}"
                    ),
                    problem_kind="relation",
                )
            kind = "field" if last else "relation"
            known = sorted(current.fields) if last else sorted(current.relations)
            return PathInfo(
                False,
                current.name,
                problem=(f"{current.name} has no {kind} {part!r}{suggest(part, known)}"),
                problem_kind=kind,
            )
        return PathInfo(False, entity, problem="empty field path")  # pragma: no cover

    def with_overrides(self, overrides: dict[str, Any]) -> EntityModel:
        """This model adapted by crmflow.yaml's `entities` mapping."""
        entities = dict(self.entities)
        for name, spec in overrides.items():
            base = entities.get(name)
            entities[name] = _entity(name, spec, base)
        return EntityModel(entities)


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ` (did you mean 'x'?)` hint, or nothing."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _entity(name: str, spec: dict[str, Any], base: Entity | None) -> Entity:
    # Entity names reach SQL too (the changelog triggers name their entity): an
    # identifier, checked before anything else.
    if not _IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"entities: {name!r} is not a valid entity name (letters, digits, _)")
    fields = dict(COMMON_FIELDS)
    if base is not None:
        fields.update(base.fields)
    fields.update(spec.get("fields", {}))
    relations = dict(base.relations) if base else {}
    for rel_name, rel in spec.get("relations", {}).items():
        through = None
        if "through" in rel:
            spec_through = rel["through"]
            through = Through(
                spec_through["table"],
                spec_through["key"],
                spec_through["target_key"],
                tuple(sorted((spec_through.get("where") or {}).items())),
            )
        relations[rel_name] = Relation(
            rel_name,
            rel["entity"],
            rel.get("key"),
            rel.get("foreign_key"),
            tuple(sorted((rel.get("where") or {}).items())),
            through,
        )
    pipeline = base.pipeline if base else None
    if "pipeline" in spec:
        p = spec["pipeline"]
        lookup = None
        if "lookup" in p:
            q = p["lookup"]
            lookup = StageTable(
                q["table"], q["key"], q.get("id", "id"), q.get("name", "name"), q.get("language")
            )
        pipeline = Pipeline(p["field"], tuple(p["stages"]), tuple(p.get("closed", ())), lookup)
    columns = dict(base.columns) if base else {}
    columns.update(spec.get("columns", {}))
    deleted = base.deleted if base else None
    if "deleted" in spec:
        marked = spec["deleted"]
        deleted = SoftDelete(
            marked["column"], marked.get("value", True), bool(marked.get("not_null", False))
        )
    table = spec.get("table") or (base.table if base else name + "s")
    identifiers = [*table.split(".", 1), *columns.values()]
    if pipeline is not None and pipeline.lookup is not None:
        stage_table = pipeline.lookup
        identifiers += [*stage_table.table.split(".", 1), stage_table.key]
        identifiers += [stage_table.id, stage_table.name]
    for relation in relations.values():
        if relation.through is not None:
            identifiers += [*relation.through.table.split(".", 1), relation.through.key]
            identifiers.append(relation.through.target_key)
    for identifier in identifiers:
        if not _IDENTIFIER_RE.fullmatch(identifier):
            raise ValueError(f"entities.{name}: {identifier!r} is not a valid SQL identifier")
    id_generate = base.id_generate if base else None
    if "id" in spec:
        id_generate = (spec["id"] or {}).get("generate")
    defaults = {**(base.defaults if base else {}), **(spec.get("defaults") or {})}
    for identifier in defaults:
        if not _IDENTIFIER_RE.fullmatch(identifier):
            raise ValueError(f"entities.{name}: {identifier!r} is not a valid SQL identifier")
    return Entity(name, table, fields, columns, relations, pipeline, deleted, id_generate, defaults)


@cache
def builtin_model() -> EntityModel:
    """The built-in entity model of the demo CRM."""
    from crmflow.rules.yamlload import load_text

    text = (Path(crmflow.__file__).parent / "data" / "entities.yaml").read_text(encoding="utf-8")
    raw = load_text(text, "entities.yaml")[0].data
    return EntityModel({name: _entity(name, spec, None) for name, spec in raw.items()})


def describe(entity: Entity) -> dict[str, Any]:
    """An entity as `crmflow entities` shows it: what workflows can name."""
    relations: dict[str, Any] = {}
    for name, relation in sorted(entity.relations.items()):
        shown: dict[str, Any] = {"entity": relation.entity}
        if relation.through is not None:
            shown["through"] = relation.through.table
        elif relation.to_many:
            shown["foreign_key"] = relation.foreign_key
        else:
            shown["key"] = relation.key
        if relation.where:
            shown["where"] = dict(relation.where)
        relations[name] = shown
    described: dict[str, Any] = {
        "entity": entity.name,
        "table": entity.table,
        "fields": dict(sorted(entity.fields.items())),
        "columns": dict(sorted(entity.columns.items())),
        "relations": relations,
        "pipeline": None,
        "deleted": None,
    }
    if entity.pipeline is not None:
        described["pipeline"] = {
            "field": entity.pipeline.field,
            "stages": list(entity.pipeline.stages),
            "closed": list(entity.pipeline.closed),
        }
    if entity.deleted is not None:
        marked = entity.deleted
        described["deleted"] = (
            {"column": marked.column, "not_null": True}
            if marked.not_null
            else {"column": marked.column, "value": marked.value}
        )
    return described


def describe_text(entity: Entity) -> str:
    """The same, for people: one block per entity."""
    data = describe(entity)
    lines = [f"{entity.name}  (table {entity.table})"]
    fields = ", ".join(
        f"{name} {kind}" + (f" [{data['columns'][name]}]" if name in data["columns"] else "")
        for name, kind in data["fields"].items()
    )
    lines.append(f"  fields     {fields}")
    for name, relation in data["relations"].items():
        if "through" in relation:
            how = f"through {relation['through']}"
        elif "foreign_key" in relation:
            how = f"its {relation['foreign_key']} names ours (to-many)"
        else:
            how = f"our {relation['key']}"
        where = f", where {relation['where']}" if "where" in relation else ""
        lines.append(f"  relation   {name} -> {relation['entity']} ({how}{where})")
    if data["pipeline"]:
        pipeline = data["pipeline"]
        closed = f"; closed: {', '.join(pipeline['closed'])}" if pipeline["closed"] else ""
        lines.append(f"  pipeline   {pipeline['field']}: {' -> '.join(pipeline['stages'])}{closed}")
    if data["deleted"]:
        lines.append(f"  deleted    {data['deleted']}")
    return "\n".join(lines)
