"""Effects that change CRM records: create, update, delete, set_stage.

Each write commits together with its idempotency key (crmflow_applied), so carrying the
same action out twice changes the CRM once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crmflow.engine.effects.base import Job, Outcome
from crmflow.errors import ActionError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def _once(
    job: Job, entity: str, record_id: Any, write: Callable[[Connection], Any]
) -> tuple[bool, Any]:
    """Run `write` unless this action's key was applied before: (ran, its result)."""
    return job.crm.once(
        job.key, write, workflow=job.workflow.id, entity=entity, record_id=record_id
    )


def _values(job: Job, entity: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ActionError(f"values must be a mapping, not {type(values).__name__}")
    definition = job.crm.entity(entity)
    for name in values:
        if name not in definition.fields:
            raise ActionError(f"{entity} has no field {name!r}")
        if name == "id":
            raise ActionError("a record's id cannot be set")
    return values


def create(job: Job) -> Outcome:
    entity = job.params["entity"]
    values = _values(job, entity, job.params.get("values") or {})
    crm = job.crm
    ran, new_id = _once(
        job, entity, None, lambda conn: crm.insert(conn, entity, values, job.writer)
    )
    if not ran:
        return Outcome("skipped", f"already applied: {entity} {new_id}", {"id": new_id})
    return Outcome("done", f"created {entity} {new_id}", {"id": new_id}, touched=[(entity, new_id)])


def _targets(job: Job) -> tuple[str, list[Any]]:
    """The entity and ids an update changes: the record itself or a relation of it."""
    entity = job.event.entity
    target = job.params.get("target")
    if not target:
        return entity, [job.record.get("id")]
    crm = job.crm
    definition = crm.entity(entity)
    relation = definition.relations.get(target)
    if relation is None:
        raise ActionError(f"update.target: {entity} has no relation {target!r}")
    if relation.to_many:
        return relation.entity, [r["id"] for r in crm.children(relation, job.record)]
    if relation.through is not None:
        found = crm.through(relation, job.record)
        return relation.entity, [] if found is None else [found]
    key = job.record.get(relation.key or "")
    if key is None and job.record.get("id") is not None:
        fresh = crm.get(entity, job.record["id"])
        key = fresh.get(relation.key or "") if fresh else None
    return relation.entity, [] if key is None else [key]


def update(job: Job) -> Outcome:
    entity, ids = _targets(job)
    ids = [i for i in ids if i is not None]
    if not ids:
        return Outcome("skipped", "no record to update")
    values = _values(job, entity, job.params.get("values") or {})
    crm = job.crm
    ran, count = _once(
        job, entity, ids[0], lambda conn: crm.update(conn, entity, ids, values, job.writer)
    )
    if not ran:
        return Outcome("skipped", f"already applied to {entity} {_ids(ids)}")
    return Outcome(
        "done",
        f"updated {count} {entity} record{'s' if count != 1 else ''} "
        f"({_ids(ids)}): {', '.join(values)}",
        touched=[(entity, i) for i in ids],
    )


def delete(job: Job) -> Outcome:
    entity = job.event.entity
    record_id = job.record.get("id")
    if record_id is None:
        return Outcome("skipped", "the record has no id")
    crm = job.crm
    ran, count = _once(
        job, entity, record_id, lambda conn: crm.delete(conn, entity, record_id, job.writer)
    )
    if not ran:
        return Outcome("skipped", f"already applied: {entity} {record_id} deleted")
    if not count:
        return Outcome("skipped", f"{entity} {record_id} was already gone")
    return Outcome("done", f"deleted {entity} {record_id}", touched=[(entity, record_id)])


def set_stage(job: Job) -> Outcome:
    entity = job.event.entity
    crm = job.crm
    definition = crm.entity(entity)
    if definition.pipeline is None:
        raise ActionError(f"{entity} has no pipeline")
    pipeline = definition.pipeline
    stage = job.params["stage"]
    if stage not in pipeline.all_stages:
        raise ActionError(f"{entity} has no stage {stage!r}")
    record_id = job.record.get("id")
    current_record = crm.get(entity, record_id) or job.record
    current = current_record.get(pipeline.field)
    if current == stage:
        return Outcome("skipped", f"already at {stage}")
    if pipeline.is_backward(current, stage) and not job.params.get("allow_backward", False):
        return Outcome(
            "skipped",
            f"refused to move {entity} {record_id} back from {current} "
            f"to {stage} (allow_backward is false)",
        )
    values = {pipeline.field: stage}
    ran, _ = _once(
        job,
        entity,
        record_id,
        lambda conn: crm.update(conn, entity, [record_id], values, job.writer),
    )
    if not ran:
        return Outcome("skipped", f"already applied: {entity} {record_id} to {stage}")
    return Outcome(
        "done",
        f"moved {entity} {record_id} from {current} to {stage}",
        touched=[(entity, record_id)],
    )


def generate_code(job: Job) -> Outcome:
    import secrets

    from crmflow.rules.actions import DEFAULT_ALPHABET

    length = int(job.params.get("length") or 8)
    alphabet = str(job.params.get("alphabet") or DEFAULT_ALPHABET)
    code = "".join(secrets.choice(alphabet) for _ in range(length))
    return Outcome("done", f"generated a {length}-character code", {"code": code})


def _ids(ids: list[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
