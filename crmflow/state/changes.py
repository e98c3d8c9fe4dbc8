"""Change capture's bookkeeping: snapshots, watermarks, inflight changes, crmflow's own writes.

Snapshots are the last values crmflow saw of each record; a watermark is how far capture
has read an entity; an inflight change is one begun and not yet finished; a noted write
lets the change it causes be known as crmflow's own (chains).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from crmflow.state.tables import Tables, epoch, inflight, snapshots, watermarks, writes

# Upserts of the tables keyed by (entity, record_id), by dialect: built once, compiled once.
_UPSERTS: dict[tuple[str, str], Any] = {}


def _upserts(dialect: str, table: Table) -> Any:
    """An insert of `table` that updates the row of the same record instead; None for a
    database without one here."""
    found = _UPSERTS.get((dialect, table.name))
    if found is not None or dialect not in ("postgresql", "sqlite"):
        return found
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    found = _UPSERTS[(dialect, table.name)] = statement.on_conflict_do_update(
        index_elements=[table.c.entity, table.c.record_id],
        set_={
            c.name: statement.excluded[c.name]
            for c in table.columns
            if c.name not in ("entity", "record_id")
        },
    )
    return found


class ChangeStore(Tables):
    """State's methods over crmflow_snapshots, _watermarks, _inflight and _writes."""

    # -- snapshots and watermarks (change capture) -----------------------------------
    def snapshots(self, entity: str, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """id -> (version, data) for those of `ids` crmflow has seen."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        with self._connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(snapshots.c.record_id, snapshots.c.version, snapshots.c.data).where(
                    snapshots.c.entity == entity, snapshots.c.record_id.in_(chunk)
                )
                for record_id, version, data in conn.execute(query):
                    found[record_id] = (version, json.loads(data))
        return found

    def snapshot_ids(self, entity: str) -> set[str]:
        with self._connect() as conn:
            query = select(snapshots.c.record_id).where(snapshots.c.entity == entity)
            return {row[0] for row in conn.execute(query)}

    def save_snapshots(self, entity: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Upsert (id, version, data) rows, in one transaction."""
        if not rows:
            return
        with self._begin() as conn:
            self._replace(
                conn,
                snapshots,
                entity,
                [
                    {
                        "entity": entity,
                        "record_id": i,
                        "version": v,
                        "data": json.dumps(d, default=str),
                    }
                    for i, v, d in rows
                ],
            )

    def _replace(
        self, conn: Connection, table: Table, entity: str, rows: list[dict[str, Any]]
    ) -> None:
        """Rows of `table` (keyed by entity and record id) inserted, or in place of those
        there, in order: the last of a record wins."""
        upsert = _upserts(conn.dialect.name, table)
        if upsert is not None:
            # One statement per row, sent together: a delete of every row first costs as
            # much again (three times as much on PostgreSQL) and a round trip.
            conn.execute(upsert, rows)
            return
        ids = [row["record_id"] for row in rows]
        for start in range(0, len(ids), 500):
            conn.execute(
                table.delete().where(
                    table.c.entity == entity, table.c.record_id.in_(ids[start : start + 500])
                )
            )
        conn.execute(insert(table), list({row["record_id"]: row for row in rows}.values()))

    def drop_snapshots(self, entity: str, ids: list[str]) -> None:
        self._delete_records(snapshots, entity, ids)

    def _delete_records(self, table: Table, entity: str, ids: list[str]) -> None:
        """The rows of `table` for these records, 500 ids to a statement."""
        with self._begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    table.delete().where(
                        table.c.entity == entity,
                        table.c.record_id.in_(ids[start : start + 500]),
                    )
                )

    def watermark(self, entity: str) -> tuple[str | None, float | None]:
        with self._connect() as conn:
            row = conn.execute(
                select(watermarks.c.value, watermarks.c.scanned_at).where(
                    watermarks.c.entity == entity
                )
            ).first()
        return (row[0], row[1]) if row else (None, None)

    def set_watermark(
        self, entity: str, value: str | None = None, scanned_at: float | None = None
    ) -> None:
        with self._begin() as conn:
            row = conn.execute(
                select(watermarks.c.value).where(watermarks.c.entity == entity)
            ).first()
            values: dict[str, Any] = {}
            if value is not None:
                values["value"] = value
            if scanned_at is not None:
                values["scanned_at"] = scanned_at
            if row is None:
                conn.execute(
                    insert(watermarks).values(
                        entity=entity, value=value or "", scanned_at=scanned_at
                    )
                )
            elif values:
                conn.execute(
                    update(watermarks).where(watermarks.c.entity == entity).values(**values)
                )

    def begin_changes(self, entity: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Mark changes (record id, the change as JSON) as being handled, in one transaction."""
        if not changes:
            return
        with self._begin() as conn:
            self._replace(
                conn,
                inflight,
                entity,
                [
                    {"entity": entity, "record_id": rid, "change": json.dumps(data, default=str)}
                    for rid, data in changes
                ],
            )

    def begin_change(self, entity: str, record_id: Any, change: dict[str, Any]) -> None:
        self.begin_changes(entity, [(str(record_id), change)])

    def end_changes(self, entity: str, ids: list[str]) -> None:
        self._delete_records(inflight, entity, ids)

    def end_change(self, entity: str, record_id: Any) -> None:
        self.end_changes(entity, [str(record_id)])

    def unfinished(self, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Changes of these records that a daemon began and did not finish."""
        found: dict[str, dict[str, Any]] = {}
        with self._connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(inflight.c.record_id, inflight.c.change).where(
                    inflight.c.entity == entity, inflight.c.record_id.in_(ids[start : start + 500])
                )
                for record_id, change in conn.execute(query):
                    found[record_id] = json.loads(change)
        return found

    # -- crmflow's own writes (chains) ------------------------------------------------
    def note_write(self, entity: str, record_id: Any, key: str, chain: list[Any]) -> None:
        row = {
            "entity": entity,
            "record_id": str(record_id),
            "key": key,
            "chain": json.dumps(chain),
            "at": epoch(self.clock()),
        }
        if self._queue(writes, row):
            return
        with self._begin() as conn:
            conn.execute(insert(writes), [row])

    def take_write(self, entity: str, record_id: Any) -> list[Any] | None:
        """The chain of crmflow's oldest unclaimed write to this record (claiming it)."""
        return self.take_writes(entity, [str(record_id)]).get(str(record_id))

    def take_writes(self, entity: str, ids: list[str]) -> dict[str, list[Any]]:
        """For each of these records with one, the chain of crmflow's oldest unclaimed
        write to it; every write to them is claimed."""
        chains: dict[str, list[Any]] = {}
        with self._begin() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    select(writes.c.record_id, writes.c.chain)
                    .where(writes.c.entity == entity, writes.c.record_id.in_(chunk))
                    .order_by(writes.c.id)
                ).all()
                if not rows:
                    continue
                for record_id, chain in rows:
                    chains.setdefault(record_id, list(json.loads(chain)))
                found = sorted({record_id for record_id, _ in rows})
                conn.execute(
                    writes.delete().where(writes.c.entity == entity, writes.c.record_id.in_(found))
                )
        return chains
