"""Change capture: which records were created, updated and deleted since the last look.

Polling (the default) reads rows whose `updated_at` is at or after the watermark minus an
overlap window, through the column's index, so an idle poll costs the same on a small and
a large table. Rows re-read in the overlap are recognised by their version (a hash of the
row's values) against crmflow's snapshot, which also supplies `previous`. Soft deletes
are changes; hard deletes are found by a separate, slower scan of ids.

`change_capture: triggers` (SQLite) has triggers write every insert, update and delete
into a changelog table with the row's values, read in commit order: exact, including a
row created and deleted between two looks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.types import DateTime

from crmflow.crm.database import CRM, iso_utc
from crmflow.engine.events import Event
from crmflow.errors import ConfigError
from crmflow.keys import record_version
from crmflow.state.store import State
from crmflow.timeutil import Clock, format_utc, parse_temporal, to_instant

CHANGELOG = "crmflow_changelog"
# How far a text timestamp's digits may sit from its instant: UTC offsets run from -12:00
# to +14:00, so `…T08:00:00-05:00` (13:00 UTC) reads as text up to 14 hours early.
OFFSET_SPAN = timedelta(hours=14)
# A name that may stand in DDL between double quotes, or as a string between single ones.
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass
class Change:
    entity: str
    kind: str  # created, updated, deleted
    record: dict[str, Any]
    previous: dict[str, Any] | None
    version: str
    at: datetime | None
    actor: Any = None
    chain: list[Any] | None = None  # set when crmflow's own write caused it
    baseline: bool = False
    late: bool = False  # found by the reconciliation sweep, not by a poll's window

    @property
    def record_id(self) -> Any:
        return self.record.get("id")

    def to_stored(self) -> dict[str, Any]:
        """This change as JSON, kept while it is handled so that a restart can finish it."""
        data = dict(self.__dict__)
        data["at"] = format_utc(self.at) if self.at is not None else None
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Change:
        at = data.get("at")
        return cls(**{**data, "at": _instant(at) if isinstance(at, str) else at})

    def to_event(self, now: datetime) -> Event:
        """The event to evaluate; a change stamped later than `now` counts as now."""
        at = self.at if self.at is not None and self.at <= now else now
        return Event(
            self.entity,
            self.kind,
            self.record,
            self.previous,
            self.actor,
            at=at,
            version=self.version,
            chain=self.chain,
        )


@dataclass
class Capture:
    crm: CRM
    state: State
    entities: list[str]
    clock: Clock
    overlap: timedelta = timedelta(minutes=5)
    delete_scan_every: timedelta = timedelta(seconds=60)
    batch: int = 5000
    mode: str = "polling"
    # The CRM database's clock; None reads it from the database (tests may set their own).
    db_clock: Clock | None = None
    # What the last poll read up to, applied by advance() once its changes are committed.
    _pending_mark: tuple[str, str] | None = field(default=None, init=False)
    _pending_seq: int | None = field(default=None, init=False)
    # The lower bound of each entity's latest window: the sweep leaves newer rows to it.
    lower: dict[str, datetime] = field(default_factory=dict, init=False)

    # -- set-up -----------------------------------------------------------------------
    def ready(self, entity: str) -> bool:
        value, _ = self.state.watermark(entity)
        return value is not None

    def baseline(self, entity: str) -> Iterator[Change]:
        """Snapshot every live row of `entity`; yields each as a (baseline) created change.

        The caller fires nothing for them unless it backfills.
        """
        if self.mode == "triggers":
            self.install_triggers(entity)
        start_seq = self._start_mark() if self.mode == "triggers" else None
        # Read before the scan: a row changed while the scan runs is stamped after it.
        started = self.db_now()
        for records in self.pages(entity):
            rows: list[tuple[str, str, dict[str, Any]]] = []
            changes = []
            for record in records:
                change = baseline_change(entity, record)
                rows.append((str(record["id"]), change.version, record))
                changes.append(change)
            self.state.save_snapshots(entity, rows)
            yield from changes
        mark = str(start_seq) if start_seq is not None else iso_utc(started)
        self.state.set_watermark(entity, mark, scanned_at=self.clock().timestamp())

    def pages(
        self, entity: str, *, include_deleted: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        """The table's records in pages of `batch`, by id (no read is held between pages)."""
        after = None
        while True:
            records = self.crm.page(entity, after, self.batch, include_deleted=include_deleted)
            if records:
                yield records
            if len(records) < self.batch:
                return
            after = records[-1]["id"]

    def updated_column(self, entity: str) -> Any:
        """The column polls read `updated_at` from; ConfigError when the table lacks it."""
        table = self.crm.table(entity)
        name = self.crm.entity(entity).column("updated_at")
        if name not in table.c:
            raise ConfigError(
                f"entities.{entity}: the table {table.name} has no column {name!r} for "
                "updated_at (map it under columns:); polling needs it"
            )
        return table.c[name]

    def ensure_baselines(
        self,
        entities: Iterable[str] | None = None,
        *,
        each: Callable[[Change], object] | None = None,
        taken: Callable[[str, int], object] | None = None,
    ) -> dict[str, int]:
        """Take the baseline of each entity (default: every watched one) that has none.

        `each` sees every baseline change (a backfill fires for them); `taken` hears each
        entity's count as soon as its baseline is done. Returns the counts by entity.
        """
        counts: dict[str, int] = {}
        for entity in self.entities if entities is None else entities:
            if self.mode == "polling":
                self.updated_column(entity)  # a mapping mistake stops the start, in one line
            if self.ready(entity):
                continue
            seen = 0
            for change in self.baseline(entity):
                seen += 1
                if each is not None:
                    each(change)
            counts[entity] = seen
            if taken is not None:
                taken(entity, seen)
        return counts

    # -- polling ----------------------------------------------------------------------
    def db_now(self) -> datetime:
        """The CRM database's clock: what application servers' stamps are measured by."""
        return self.db_clock() if self.db_clock is not None else self.crm.now()

    def poll(self, entity: str, db_now: datetime | None = None) -> list[Change]:
        """The changes of `entity` since the last poll, by its `updated_at` window.

        The watermark is the CRM database's clock at the last poll (`db_now`, read once
        per tick), never a row's stamp: a row stamped in the future cannot move it and
        hide later writes. The window reaches back `overlap` from the older of the
        watermark and the clock now, so a row stamped by an application server whose
        clock runs behind, or committed late, is still seen; re-read rows are known by
        their version. An idle poll reads an empty window, whatever the table's size.
        """
        if self.mode == "triggers":
            return self._read_changelog(entity)
        value, _ = self.state.watermark(entity)
        assert value is not None, "baseline first"
        if db_now is None:
            db_now = self.db_now()
        mark = _instant(value) or db_now
        lower = min(mark, db_now) - self.overlap
        self.lower[entity] = lower
        changes = self._compare(entity, self._window(entity, lower))
        self._pending_mark = (entity, iso_utc(db_now)) if db_now > mark else None
        return changes

    def _window(self, entity: str, lower: datetime) -> list[dict[str, Any]]:
        """Every row whose `updated_at` is at or after `lower`, read through its index."""
        table = self.crm.table(entity)
        column = self.updated_column(entity)
        if isinstance(column.type, DateTime) and self.crm.engine.dialect.name != "sqlite":
            # A real timestamp column compares instants. `timestamptz` gets an aware bound
            # (read as local time under the session's zone otherwise); a plain
            # `timestamp` holds UTC without a zone.
            bound = lower if column.type.timezone else lower.astimezone(UTC).replace(tzinfo=None)
            query = select(table).where(column >= bound).order_by(column, table.c.id)
        else:
            query = self._text_window(table, column, lower)
        with self.crm.engine.connect() as conn:
            result = conn.execute(query)
            rows = {}
            for record in self.crm._records(entity, result, tuple(result.keys())):
                rows.setdefault(str(record["id"]), record)
        return list(rows.values())

    def _text_window(self, table: Table, column: Any, lower: datetime) -> Any:
        """Rows from `lower` on, where timestamps are text (and every SQLite column is).

        Text order is time order only within one form: "T" and space sort apart, and a
        negative UTC offset puts the digits hours behind the instant. So each form gets
        its own ranges, each an index search (an OR would scan the index): from `lower`
        on, and below it, down to the widest offset, only rows whose text carries a
        negative offset (checked on the index entry, before the row is read).
        """
        utc = lower.astimezone(UTC)
        below = utc - OFFSET_SPAN

        def at(moment: datetime, fmt: str) -> Any:
            return literal(moment.strftime(fmt), String())

        def rows(*where: Any) -> Any:
            return select(table).where(*where)

        negative = func.substr(column, 11).contains("-")
        t_form, s_form = "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"
        parts = [
            # "T" form from lower on; the space form of later days sorts after it too.
            rows(column >= at(utc, t_form)),
            # The space form of lower's own day.
            rows(column >= at(utc, s_form), column < at(utc, "%Y-%m-%dT")),
            rows(column >= at(below, t_form), column < at(utc, t_form), negative),
        ]
        if below.date() == utc.date():
            parts.append(rows(column >= at(below, s_form), column < at(utc, s_form), negative))
        else:  # the span crosses midnight: each day's space form is a range of its own
            parts.append(
                rows(column >= at(below, s_form), column < at(below, "%Y-%m-%dT"), negative)
            )
            parts.append(rows(column >= at(utc, "%Y-%m-%d "), column < at(utc, s_form), negative))
        both = union_all(*parts).subquery()
        return select(both).order_by(both.c[column.name], both.c.id)

    def _compare(self, entity: str, records: list[dict[str, Any]]) -> list[Change]:
        ids = [str(r["id"]) for r in records]
        known = self.state.snapshots(entity, ids)
        definition = self.crm.entity(entity)
        changes = []
        for record in records:
            rid = str(record["id"])
            version = record_version(record)
            seen = known.get(rid)
            if seen is not None and seen[0] == version:
                continue
            at = _instant(record.get("updated_at"))
            actor = record.get("updated_by")
            if definition.is_deleted(record):
                if seen is not None:
                    changes.append(Change(entity, "deleted", record, None, version, at, actor))
                continue
            kind = "created" if seen is None else "updated"
            changes.append(
                Change(entity, kind, record, seen[1] if seen else None, version, at, actor)
            )
        return changes

    def commit(self, change: Change) -> None:
        """Remember a processed change (call after its actions ran or were stored)."""
        self.commit_all([change])

    def commit_all(self, changes: list[Change]) -> None:
        """Remember processed changes of one entity, in order: the last of a record wins."""
        if not changes:
            return
        entity = changes[0].entity
        latest = {str(c.record_id): c for c in changes}
        gone = [rid for rid, c in latest.items() if c.kind == "deleted"]
        kept = [(rid, c.version, c.record) for rid, c in latest.items() if c.kind != "deleted"]
        if gone:
            self.state.drop_snapshots(entity, gone)
        self.state.save_snapshots(entity, kept)

    def advance(self, entity: str) -> None:
        """Move the watermark past what the last poll read (after its changes committed)."""
        if self.mode == "triggers":
            if self._pending_seq is not None:
                self.state.set_watermark(entity, str(self._pending_seq))
                self._trim_changelog(entity)
            return
        pending = self._pending_mark
        if pending is not None and pending[0] == entity:
            self.state.set_watermark(entity, pending[1])

    def scan_deletes(self, entity: str, force: bool = False) -> list[Change]:
        """Records crmflow knows that are gone from the table (hard deletes)."""
        _, scanned = self.state.watermark(entity)
        now = self.clock()
        if (
            not force
            and scanned is not None
            and now.timestamp() - scanned < self.delete_scan_every.total_seconds()
        ):
            return []
        table = self.crm.table(entity)
        with self.crm.engine.connect() as conn:
            present = {str(row[0]) for row in conn.execute(select(table.c.id))}
        gone = sorted(self.state.snapshot_ids(entity) - present)
        self.state.set_watermark(entity, scanned_at=now.timestamp())
        if not gone:
            return []
        snaps = self.state.snapshots(entity, gone)
        return [
            Change(entity, "deleted", data, None, version, now)
            for rid, (version, data) in snaps.items()
        ]

    # -- triggers mode (SQLite) -------------------------------------------------------
    def _changelog(self) -> Table:
        return Table(
            CHANGELOG,
            MetaData(),
            Column(
                "seq",
                BigInteger().with_variant(Integer, "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            Column("entity", String(80), nullable=False),
            Column("record_id", String(80), nullable=False),
            Column("op", String(1), nullable=False),
            Column("data", Text, nullable=False),
            Column("txid", BigInteger),  # PostgreSQL: the writing transaction
            sqlite_autoincrement=True,
        )

    @property
    def _postgres(self) -> bool:
        return self.crm.engine.dialect.name == "postgresql"

    def install_triggers(self, entity: str) -> None:
        """Triggers that log each insert, update and delete of `entity` with the row."""
        dialect = self.crm.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError("change_capture: triggers needs SQLite or PostgreSQL")
        table = self.crm.table(entity)
        # DDL takes no bound parameters: every name pasted into it is checked first (the
        # entity and table names by the mapping's pattern, column names here).
        for name in (entity, table.name, *(c.name for c in table.columns)):
            if not _SAFE_NAME.fullmatch(name):
                raise ValueError(f"change_capture: triggers: {name!r} is not a plain SQL name")
        self._changelog().create(self.crm.engine, checkfirst=True)
        with self.crm.engine.begin() as conn:
            if dialect == "postgresql":
                conn.execute(text(_PG_FUNCTION))
                name = f"crmflow_capture_{table.name}"
                conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}" ON "{table.name}"'))
                conn.execute(
                    text(
                        f'CREATE TRIGGER "{name}" AFTER INSERT OR UPDATE OR DELETE ON '
                        f'"{table.name}" FOR EACH ROW '
                        f"EXECUTE FUNCTION crmflow_capture('{entity}')"
                    )
                )
                return
            for op, when, row in (
                ("I", "INSERT", "NEW"),
                ("U", "UPDATE", "NEW"),
                ("D", "DELETE", "OLD"),
            ):
                pairs = ", ".join(f"'{c.name}', {row}.\"{c.name}\"" for c in table.columns)
                conn.execute(
                    text(
                        f'CREATE TRIGGER IF NOT EXISTS "crmflow_{table.name}_{op}" '
                        f'AFTER {when} ON "{table.name}" BEGIN '
                        f"INSERT INTO {CHANGELOG} (entity, record_id, op, data) "
                        f"VALUES ('{entity}', {row}.id, '{op}', json_object({pairs})); END"
                    )
                )

    def _start_mark(self) -> int:
        """Where reading the changelog starts: its end (SQLite) or the oldest running
        transaction (PostgreSQL)."""
        with self.crm.engine.connect() as conn:
            if self._postgres:
                return int(
                    conn.execute(
                        text("SELECT txid_snapshot_xmin(txid_current_snapshot())")
                    ).scalar_one()
                )
            return int(
                conn.execute(text(f"SELECT coalesce(max(seq), 0) FROM {CHANGELOG}")).scalar_one()
            )

    def _read_changelog(self, entity: str) -> list[Change]:
        value, _ = self.state.watermark(entity)
        last = int(value or 0)
        log = self._changelog()
        with self.crm.engine.connect() as conn:
            if self._postgres:
                # Only transactions older than the oldest one still running: nothing can
                # commit below that line later, so a late commit is never skipped.
                horizon = int(
                    conn.execute(
                        text("SELECT txid_snapshot_xmin(txid_current_snapshot())")
                    ).scalar_one()
                )
                query = (
                    select(log)
                    .where(log.c.entity == entity, log.c.txid >= last, log.c.txid < horizon)
                    .order_by(log.c.txid, log.c.seq)
                )
                entries = list(conn.execute(query))
                self._pending_seq = horizon
            else:
                query = (
                    select(log)
                    .where(log.c.entity == entity, log.c.seq > last)
                    .order_by(log.c.seq)
                    .limit(self.batch)
                )
                entries = list(conn.execute(query))
                self._pending_seq = entries[-1].seq if entries else None
        if not entries:
            return []
        reverse = {c: f for f, c in self.crm.entity(entity).columns.items()}
        ids = list(dict.fromkeys(str(e.record_id) for e in entries))
        known = dict(self.state.snapshots(entity, ids))
        changes = []
        for entry in entries:
            raw = json.loads(entry.data)
            record = {reverse.get(k, k): v for k, v in raw.items()}
            rid = str(entry.record_id)
            version = record_version(record)
            seen = known.get(rid)
            at = _instant(record.get("updated_at")) or self.clock()
            actor = record.get("updated_by")
            if entry.op == "D":
                # Even a row created and deleted between two looks shows up (exactly).
                changes.append(Change(entity, "deleted", record, None, version, at, actor))
                known.pop(rid, None)
                continue
            if seen is not None and seen[0] == version:
                continue
            kind = "created" if entry.op == "I" or seen is None else "updated"
            changes.append(
                Change(entity, kind, record, seen[1] if seen else None, version, at, actor)
            )
            known[rid] = (version, record)
        return changes

    def _trim_changelog(self, entity: str) -> None:
        value, _ = self.state.watermark(entity)
        log = self._changelog()
        done = log.c.txid < int(value or 0) if self._postgres else log.c.seq <= int(value or 0)
        with self.crm.engine.begin() as conn:
            conn.execute(log.delete().where(log.c.entity == entity, done))


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION crmflow_capture() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO crmflow_changelog (entity, record_id, op, data, txid)
    VALUES (TG_ARGV[0], OLD.id::text, 'D', row_to_json(OLD)::text, txid_current());
  ELSE
    INSERT INTO crmflow_changelog (entity, record_id, op, data, txid)
    VALUES (TG_ARGV[0], NEW.id::text, left(TG_OP, 1), row_to_json(NEW)::text, txid_current());
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""


def baseline_change(entity: str, record: dict[str, Any]) -> Change:
    """An existing record as a baseline takes it: created, as of its `updated_at`."""
    version = record_version(record)
    at = _instant(record.get("updated_at"))
    return Change(entity, "created", record, None, version, at, baseline=True)


def _instant(value: Any) -> datetime | None:
    parsed = parse_temporal(value) if value is not None else None
    if parsed is None:
        return None
    return to_instant(parsed, UTC)
