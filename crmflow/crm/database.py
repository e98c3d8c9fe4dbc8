"""The CRM database through SQLAlchemy Core: records, relations, and exactly-once writes.

Tables and columns come from the entity model (adapted by crmflow.yaml's `entities`),
are checked against the database's own catalogue, and every value is a bound parameter.
A write made by an action commits in one transaction with its idempotency key in
`crmflow_applied`, so doing it again is recognised and skipped. Inside a batch
(`CRM.batch`) the writes of one thread share a transaction, each in a savepoint of its
own, and are committed together: one commit (one sync of the CRM's file) for many. A
batch of keys expected to be new (`new_keys`) spends one statement on a write: no
savepoint, no look-up of its key, its key inserted with the others before the commit; a
key applied before or a failing write rolls the batch back (RedoBatch), for its caller
to make again the careful way.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    IntegrityError,
    NoSuchTableError,
    SQLAlchemyError,
)
from sqlalchemy.sql.elements import ClauseElement

from crmflow.config import MISSING_CRM_FILE, sqlite_file
from crmflow.crm.failures import CrmUnavailable, short, temporary, write_failed
from crmflow.drivers import engine_for
from crmflow.errors import ActionError, ConfigError
from crmflow.rules.entities import Entity, EntityModel, Relation
from crmflow.timeutil import Clock, parse_temporal, system_clock

APPLIED_TABLE = "crmflow_applied"


def iso_utc(moment: datetime) -> str:
    """The timestamp form crmflow writes: UTC with milliseconds, fixed width, as SQLite's
    strftime('%Y-%m-%dT%H:%M:%fZ') writes it, so text order is time order."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def plain(value: Any) -> Any:
    """A database value as JSON-able data (dates as ISO text, decimals as numbers)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # SQLite REAL columns give 48000.0 for 48000
    if isinstance(value, uuid.UUID):
        return str(value)  # PostgreSQL uuid columns: ids are strings in crmflow
    if isinstance(value, (bytes, memoryview)):
        return None
    return value


# Value types a record keeps as the driver gives them (plain() returns them as they are).
_AS_IS = frozenset({str, int, bool, type(None)})


class BatchLost(CrmUnavailable):
    """A batch's transaction failed: every write it held is gone.

    Raised by each later write and commit of that batch, so that nothing recording those
    writes as made (the state database's unit of work) can commit after it.
    """


class RedoBatch(Exception):
    """A batch of new keys (`CRM.batch(new_keys=True)`) was rolled back: one of its
    writes failed, without a savepoint of its own to roll back to, or one of its keys
    was applied before. Every write it held since its last commit is gone.

    Not an ActionError, so no action takes it for its outcome: it goes up to whoever
    opened the batch (daemon/batches.py), who makes the writes again in a batch that
    looks each key up, where a failing write rolls back alone and a repeat is skipped."""


@dataclass
class _Batch:
    """One thread's open batch: a connection in a transaction, opened with the first write."""

    conn: Connection | None = None
    # Writes made in its open transaction (a failure before the first loses nothing).
    writes: int = 0
    # Why its writes were lost, once they were: the batch then refuses to go on.
    lost: BaseException | None = None
    # Its keys are expected to be new (CRM.batch): a write neither looks its key up nor
    # inserts it; the keys are inserted together before each commit.
    new_keys: bool = False
    # The keys applied in the batch, with their results as `once` gave them: a key
    # repeated within it is answered from here (its row may not be inserted yet).
    applied: dict[str, Any] = dataclasses.field(default_factory=dict)
    # crmflow_applied rows of a batch of new keys not inserted yet.
    unsaved: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def refuse_if_lost(self) -> None:
        if isinstance(self.lost, _Undone):
            raise RedoBatch(
                f"the batch's writes were rolled back, to be made again: {self.lost}"
            ) from self.lost
        if self.lost is not None:
            raise BatchLost(
                f"CRM unavailable, the batch's writes were rolled back: {short(self.lost)}"
            ) from self.lost


class _Undone(Exception):
    """Why a batch of new keys was rolled back (RedoBatch)."""


def _count(batch: _Batch, key: str, ran: bool, result: Any) -> None:
    """A write made in `batch` (`ran`), or recognised as made before."""
    batch.writes += ran
    if ran:
        # As a repeat would read it from crmflow_applied: JSON's values (a new record's
        # id, most often) are kept as they are.
        batch.applied[key] = (
            result if type(result) in _AS_IS else _loads(json.dumps(result, default=str))
        )


class CRM:
    """One CRM database."""

    def __init__(
        self,
        url: str,
        model: EntityModel,
        *,
        clock: Clock = system_clock,
        engine: Engine | None = None,
        read_only: bool = False,
        timestamp_format: str | None = None,
    ) -> None:
        self.url = url
        self.model = model
        self.timestamp_format = timestamp_format
        self.clock = clock
        self.read_only = read_only
        try:
            self.engine = engine or _engine(url, read_only)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ConfigError(f"crm: cannot open {_safe_url(url)}: {exc}") from None
        self._tables: dict[str, Table] = {}
        # Tables are reflected on first use, by whichever thread needs one first (the
        # daemon's or a worker's): one at a time, or a thread may meet a table another
        # is still filling in (no columns yet).
        self._reflecting = threading.RLock()
        self._joins: dict[str, Table] = {}
        self._stage_cache: dict[str, dict[Any, str]] = {}
        self._lookups: dict[str, Any] = {}
        self._metadata = MetaData()
        self._applied: Table | None = None
        self._batches = threading.local()
        self._inserts: dict[str, Any] = {}
        # Per entity (and the definition it was made for): fields of a result's columns,
        # the column of each field written.
        self._result_fields: dict[tuple[int, tuple[str, ...]], tuple[Entity, tuple[str, ...]]] = {}
        self._field_columns: dict[tuple[str, str], tuple[Entity, Table, Any]] = {}
        # Whether writes are exactly once (crmflow_applied exists); None while the
        # database could not be asked (locked, unreachable): `ensure_applied` asks again.
        self.exactly_once: bool | None = False
        if not read_only:
            try:
                self.exactly_once = self._prepare_applied()
            except CrmUnavailable:
                self.exactly_once = None

    # -- schema -----------------------------------------------------------------------
    def ensure_applied(self) -> bool:
        """Whether CRM writes are exactly once, creating crmflow_applied if need be.

        CrmUnavailable while the database cannot be reached (try again later).
        """
        if self.exactly_once is None:
            self.exactly_once = self._prepare_applied()
        return self.exactly_once

    def _prepare_applied(self) -> bool:
        self._applied = Table(
            APPLIED_TABLE,
            MetaData(),
            Column("key", String(80), primary_key=True),
            Column("applied_at", String(40), nullable=False),
            Column("workflow", String(200)),
            Column("entity", String(80)),
            Column("record_id", String(80)),
            Column("result", Text),  # JSON output of the action (a new record's id)
        )
        # Built once: every write asks and records its key (SQLAlchemy compiles them once).
        self._seen = select(self._applied.c.result).where(self._applied.c.key == bindparam("key"))
        self._record_key = insert(self._applied)
        try:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    # Several daemons may start at once: create the table one at a time.
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(b"crmflow:a", "big") % (2**63)},
                    )
                self._applied.create(conn, checkfirst=True)
        except SQLAlchemyError as exc:
            if temporary(exc):
                raise CrmUnavailable(f"CRM unavailable: {short(exc)}") from exc
            # A read-only or locked-down CRM: writes still happen, at least once.
            self._applied = None
            return False
        return True

    def entity(self, name: str) -> Entity:
        entity = self.model.get(name)
        if entity is None:
            raise ActionError(f"unknown entity {name!r}")
        return entity

    def table(self, name: str) -> Table:
        """The reflected table of entity `name`."""
        if name not in self._tables:
            entity = self.entity(name)
            try:
                self._tables[name] = self._reflect(entity.table)
            except NoSuchTableError:
                raise ActionError(f"{name}: the CRM has no table {entity.table!r}") from None
            except SQLAlchemyError as exc:
                error = CrmUnavailable if temporary(exc) else ActionError
                raise error(f"{name}: cannot read table {entity.table!r}: {short(exc)}") from exc
        return self._tables[name]

    def _reflect(self, qualified: str) -> Table:
        """A table by its name in the mapping, `schema.table` on PostgreSQL."""
        schema, _, name = qualified.rpartition(".")
        with warnings.catch_warnings():
            # MySQL-style declarations in SQLite (INT(11)) reflect with a warning per
            # column; the type is right without its display width.
            warnings.filterwarnings("ignore", message="Could not instantiate type")
            with self._reflecting:
                return Table(name, self._metadata, schema=schema or None, autoload_with=self.engine)

    def has_table(self, name: str) -> bool:
        entity = self.model.get(name)
        if entity is None:
            return False
        schema, _, table = entity.table.rpartition(".")
        return inspect(self.engine).has_table(table, schema=schema or None)

    def _column(self, entity: str, field: str) -> Any:
        table = self.table(entity)
        definition = self.entity(entity)
        # Asked for each value of each write: found once for the definition and table.
        known = self._field_columns.get((entity, field))
        if known is not None and known[0] is definition and known[1] is table:
            return known[2]
        if field not in definition.fields and field not in table.c:
            raise ActionError(f"{entity} has no field {field!r}")
        column = definition.column(field)
        if column not in table.c:
            raise ActionError(f"{entity}.{field}: the table {table.name} has no column {column!r}")
        self._field_columns[(entity, field)] = (definition, table, table.c[column])
        return table.c[column]

    # -- batches ----------------------------------------------------------------------
    def _open_batch(self) -> _Batch | None:
        batch: _Batch | None = getattr(self._batches, "batch", None)
        return batch

    @contextmanager
    def batch(self, *, new_keys: bool = False) -> Iterator[None]:
        """This thread's writes (`once`) in one transaction, committed when the block ends
        and at each `commit_batch`; rolled back if the block raises. A batch opened inside
        another joins it.

        `new_keys`: the caller expects its keys to be new (the daemon's first try of
        changes no daemon began before), and its writes to succeed. A write then takes
        one statement, its own: no savepoint, its key neither looked up before nor
        inserted after (the batch's keys are inserted together before each commit). A
        key applied before, or a write that fails, rolls the batch's writes back
        (RedoBatch), for the caller to make again in a batch without `new_keys`.

        Whoever records the writes as made elsewhere (the daemon's state database) must
        commit the batch first (`commit_batch`), or a record could outlive its write. On
        an SQLite CRM the open transaction holds the file's write lock: the CRM
        application's own writers wait for it (their busy timeout), so batches are
        committed often (daemon/batches.py)."""
        if self._open_batch() is not None:
            yield
            return
        batch = _Batch(new_keys=new_keys)
        self._batches.batch = batch
        try:
            yield
            self._commit(batch)
        finally:
            self._batches.batch = None
            if batch.conn is not None:
                # A connection closed inside a transaction rolls it back.
                batch.conn.close()

    def commit_batch(self) -> None:
        """Commit the writes of this thread's open batch so far (nothing without one).

        BatchLost when they could not be committed, now or earlier in the batch."""
        batch = self._open_batch()
        if batch is not None:
            self._commit(batch)

    def _commit(self, batch: _Batch) -> None:
        batch.refuse_if_lost()
        conn = batch.conn
        if conn is None or not conn.in_transaction():
            return
        try:
            if batch.unsaved:
                try:
                    conn.execute(self._record_key, batch.unsaved)
                except IntegrityError as exc:
                    # A key of the batch was applied before (by a run whose record of it
                    # the state no longer has, or by another daemon meanwhile): its
                    # write was made a second time in this transaction, so all of it goes.
                    self._lose(batch, _Undone(f"a key was applied before ({short(exc)})"))
                    batch.refuse_if_lost()
                batch.unsaved = []
            conn.commit()
        except SQLAlchemyError as exc:
            self._lose(batch, exc)
            batch.refuse_if_lost()
        batch.writes = 0

    def _lose(self, batch: _Batch, exc: BaseException) -> None:
        """The batch's transaction is gone (or in doubt): its connection is dropped, and
        if it held writes, the batch is lost."""
        if batch.writes:
            batch.lost = exc
            batch.applied.clear()
        batch.writes = 0
        batch.unsaved = []
        if batch.conn is not None:
            batch.conn.invalidate()
            batch.conn.close()
            batch.conn = None

    def _batch_conn(self, batch: _Batch) -> Connection:
        """The batch's connection in its transaction, opened and begun as needed."""
        batch.refuse_if_lost()
        if batch.conn is None:
            batch.conn = self.engine.connect()
        if not batch.conn.in_transaction():
            batch.conn.begin()
            if self.engine.dialect.name == "sqlite":
                # Python's sqlite3 begins a transaction only before an INSERT, UPDATE or
                # DELETE: a SAVEPOINT outside one would start its own, and releasing it
                # would commit. An explicit BEGIN makes savepoints nest in the batch.
                batch.conn.exec_driver_sql("BEGIN")
        return batch.conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection to read with. Inside a batch that holds writes, the batch's own
        (in a savepoint, so a failed read cannot spoil the writes): what this thread wrote
        and has not committed yet is seen, as it would be without a batch. Otherwise a
        pooled connection, closed after."""
        batch = self._open_batch()
        if batch is None or batch.conn is None or not batch.writes:
            with self.engine.connect() as conn:
                yield conn
            return
        conn = self._batch_conn(batch)
        with _savepoint(conn, "crmflow_read", release=True):
            yield conn

    # -- reading ----------------------------------------------------------------------
    def _record(self, entity: str, row: Any) -> dict[str, Any]:
        return self._records(entity, [row], tuple(row._fields))[0]

    def _records(
        self, entity: str, rows: Iterable[Any], columns: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """The records of result rows whose columns are `columns` (a poll reads every row
        of its window: the fields of the columns are worked out once)."""
        definition = self.entity(entity)
        fields = self._fields_of(definition, columns)
        pipeline = definition.pipeline
        stages = pipeline is not None and pipeline.lookup is not None
        records = []
        for row in rows:
            # Most values are as JSON has them: only the others go through plain().
            record = {
                field: value if type(value) in _AS_IS else plain(value)
                for field, value in zip(fields, row, strict=True)
            }
            if stages:
                self._stage_of(entity, definition, record)
            records.append(record)
        return records

    def _stage_of(self, entity: str, definition: Entity, record: dict[str, Any]) -> None:
        """The stage by name, beside the id the row holds: what workflows speak of."""
        pipeline = definition.pipeline
        assert pipeline is not None and pipeline.lookup is not None
        stage_id = record.get(definition.field_of(pipeline.lookup.key))
        record[pipeline.field] = self._stage_name(entity, stage_id)

    def _fields_of(self, definition: Entity, columns: tuple[str, ...]) -> tuple[str, ...]:
        """The fields of a result's columns (a column not mapped is its own field's name),
        worked out once for each entity and set of columns."""
        key = (id(definition), columns)
        found = self._result_fields.get(key)
        if found is None or found[0] is not definition:
            reverse = {column: field for field, column in definition.columns.items()}
            found = self._result_fields[key] = (
                definition,
                tuple(reverse.get(c, c) for c in columns),
            )
        return found[1]

    def _stages(self, entity: str, *, fresh: bool = False) -> dict[Any, str]:
        """Stage id -> name of an entity whose stages are a table (read once, and again
        when an id or a name is not there: stages are added in the CRM's settings)."""
        if fresh or entity not in self._stage_cache:
            pipeline = self.entity(entity).pipeline
            assert pipeline is not None and pipeline.lookup is not None
            lookup = pipeline.lookup
            table = self._joins.get(lookup.table)
            if table is None:
                table = self._joins[lookup.table] = self._reflect(lookup.table)
            names: dict[Any, str] = {}
            with self._reading() as conn:
                for stage_id, name in conn.execute(
                    select(table.c[lookup.id], table.c[lookup.name])
                ):
                    if isinstance(name, dict):  # translated: {"en_US": "New", ...}
                        name = name.get(lookup.language or "en_US", next(iter(name.values()), None))
                    names[plain(stage_id)] = str(name)
            self._stage_cache[entity] = names
        return self._stage_cache[entity]

    def _stage_name(self, entity: str, stage_id: Any) -> str | None:
        if stage_id is None:
            return None
        names = self._stages(entity)
        if stage_id not in names:
            names = self._stages(entity, fresh=True)
        return names.get(stage_id)

    def _stage_id(self, entity: str, name: Any) -> Any:
        for fresh in (False, True):
            for stage_id, stage in self._stages(entity, fresh=fresh).items():
                if stage == name:
                    return stage_id
        raise ActionError(f"{entity}: no stage named {name!r} in its stage table")

    def _live(self, entity: str) -> Any:
        """A clause excluding soft-deleted rows, or None."""
        definition = self.entity(entity)
        marked = definition.deleted
        table = self.table(entity)
        if marked is None or marked.column not in table.c:
            return None
        column = table.c[marked.column]
        if marked.not_null:
            return column.is_(None)
        return column.is_distinct_from(self._bind(column, marked.value))

    def get(
        self,
        entity: str,
        record_id: Any,
        *,
        conn: Connection | None = None,
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        if record_id is None:
            return None
        table = self.table(entity)
        query = select(table).where(table.c.id == _id(table, record_id))
        live = None if include_deleted else self._live(entity)
        if live is not None:
            query = query.where(live)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self._reading() as c:
                row = c.execute(query).first()
        return self._record(entity, row) if row is not None else None

    def page(
        self, entity: str, after: Any, limit: int, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Up to `limit` records with ids after `after` (None: from the start), by id.

        Each page is read whole and its connection closed, so whoever walks a large
        table page by page (baselines, the sweep) never holds a read open while acting.
        """
        table = self.table(entity)
        query = select(table).order_by(table.c.id).limit(limit)
        if after is not None:
            query = query.where(table.c.id > _id(table, after))
        live = None if include_deleted else self._live(entity)
        if live is not None:
            query = query.where(live)
        with self._reading() as conn:
            result = conn.execute(query)
            return self._records(entity, result, tuple(result.keys()))

    def find(
        self, entity: str, where: dict[str, Any], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        table = self.table(entity)
        query = select(table)
        for field, value in where.items():
            query = query.where(self._column(entity, field) == value)
        live = self._live(entity)
        if live is not None:
            query = query.where(live)
        query = query.order_by(table.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._reading() as conn:
            result = conn.execute(query)
            return self._records(entity, result, tuple(result.keys()))

    def children(self, relation: Relation, parent: dict[str, Any]) -> list[dict[str, Any]]:
        """Records of a to-many relation of `parent`."""
        assert relation.foreign_key is not None
        if parent.get("id") is None:
            return []
        where = {relation.foreign_key: parent["id"], **dict(relation.where)}
        return self.find(relation.entity, where)

    def through(self, relation: Relation, record: dict[str, Any]) -> Any:
        """The related id a join table holds for `record` (the first, if several)."""
        link = relation.through
        assert link is not None
        if record.get("id") is None:
            return None
        table = self._joins.get(link.table)
        if table is None:
            table = self._joins[link.table] = self._reflect(link.table)
        for column in (link.key, link.target_key, *(c for c, _ in link.where)):
            if column not in table.c:
                raise ActionError(f"{link.table} has no column {column!r}")
        query = select(table.c[link.target_key]).where(
            table.c[link.key] == self._bind(table.c[link.key], record["id"])
        )
        for column, value in link.where:
            query = query.where(table.c[column] == self._bind(table.c[column], value))
        with self._reading() as conn:
            found = conn.execute(query.limit(1)).first()
        return plain(found[0]) if found is not None else None

    def related(self) -> RelatedRecords:
        """A per-event reader of related records (it caches what it read)."""
        return RelatedRecords(self)

    # -- writing ----------------------------------------------------------------------
    def _stamp(
        self, entity: str, values: dict[str, Any], actor: Any, *, created: bool
    ) -> dict[str, Any]:
        """`values` with the write's stamps: when (now) and by whom (`actor`, when known:
        a write without one leaves the CRM's modified-by column as it was)."""
        table = self.table(entity)
        now = self.clock()
        definition = self.entity(entity)
        out = dict(values)
        for field in (["created_at"] if created else []) + ["updated_at"]:
            if definition.column(field) in table.c and field not in values:
                out[field] = now
        column = table.c.get(definition.column("updated_by"))
        if column is not None and "updated_by" not in values and _fits(column, actor):
            out["updated_by"] = actor
        return out

    def _columns(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        """Fields to columns, each value in the form its column's type takes."""
        out = {}
        pipeline = self.entity(entity).pipeline
        lookup = pipeline.lookup if pipeline is not None else None
        for field, value in values.items():
            if lookup is not None and pipeline is not None and field == pipeline.field:
                # A stage by name: the row holds its id.
                column = self.table(entity).c[lookup.key]
                out[column.name] = self._bind(column, self._stage_id(entity, value))
                continue
            column = self._column(entity, field)
            out[column.name] = self._bind(column, value)
        return out

    def _bind(self, column: Any, value: Any) -> Any:
        """A value as `column` takes it: a driver refuses (SQLite's DATETIME, a uuid
        column) or misreads (text in an integer column) what does not fit its type."""
        if value is None:
            return None
        kind = column.type
        if isinstance(kind, (DateTime, Date)):
            return self._temporal(kind, value)
        if isinstance(value, (datetime, date)):
            return self._text_stamp(value)  # a timestamp into a text column
        if isinstance(kind, Uuid):
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        try:
            python_type = kind.python_type
        except NotImplementedError:
            return value
        if python_type is int and isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        return value

    def _temporal(self, kind: Any, value: Any) -> Any:
        moment = value
        if isinstance(value, str):
            moment = parse_temporal(value)
            if moment is None:
                raise ActionError(f"{value!r} is not a date or date-time")
        if isinstance(kind, DateTime) and not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)  # a day's start
        if self.engine.dialect.name == "sqlite":
            # SQLite keeps text: the CRM's own form, past SQLAlchemy's DATETIME type, which
            # would write its own (and accepts only datetime objects).
            if isinstance(kind, DateTime):
                text = self._text_stamp(moment)
            else:
                text = (moment.date() if isinstance(moment, datetime) else moment).isoformat()
            return type_coerce(text, String())
        if isinstance(kind, DateTime):
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            # timestamptz takes the instant; a plain timestamp holds UTC without a zone.
            return moment if kind.timezone else moment.astimezone(UTC).replace(tzinfo=None)
        return moment.date() if isinstance(moment, datetime) else moment

    def _text_stamp(self, moment: date) -> str:
        """A moment as this CRM writes it in text (`timestamp_format`, UTC)."""
        if not isinstance(moment, datetime):
            return moment.isoformat()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if self.timestamp_format is None:
            return iso_utc(moment)
        return moment.astimezone(UTC).strftime(self.timestamp_format)

    def once(
        self,
        key: str,
        work: Callable[[Connection], Any],
        *,
        workflow: str = "",
        entity: str = "",
        record_id: Any = None,
    ) -> tuple[bool, Any]:
        """Run `work` in one transaction with `key` recorded (inside a batch: in a
        savepoint of the batch's transaction, so a refused write rolls back alone; in a
        batch of new keys, see `batch`).

        Returns (True, result) when it ran, (False, earlier result) when this key was
        applied before: a repeat is recognised and skipped. CrmUnavailable when the CRM
        could not take the write for now (locked, unreachable): nothing was written.
        """
        if self.read_only:
            raise ActionError("the CRM is open read-only (dry run)")
        self.ensure_applied()  # a CRM unreachable at start: its key table comes first
        batch = self._open_batch()
        if batch is not None and batch.new_keys and self._applied is not None:
            made = self._once_new(batch, key, work, workflow, entity, record_id)
            if made is not None:
                return made
            # It failed before the batch held a write: made again as in any batch.
        try:
            if batch is None:
                with self.engine.begin() as conn:
                    return self._apply(conn, key, work, workflow, entity, record_id)
            conn = self._batch_conn(batch)
            if key in batch.applied:
                return False, batch.applied[key]
            with _savepoint(conn, "crmflow_write", release=False):
                ran, result = self._apply(conn, key, work, workflow, entity, record_id)
            _count(batch, key, ran, result)
            return ran, result
        except IntegrityError as exc:
            refused = exc
        except SQLAlchemyError as exc:
            if batch is not None:
                # Whether the batch's earlier writes survived is not known for every
                # driver and failure: they count as lost, and the batch is done again.
                self._lose(batch, exc)
            raise write_failed(exc) from None
        if self._applied is None:
            raise ActionError(f"the CRM refused the write: {short(refused)}")
        # Another process may have applied the same key between our check and our insert:
        # then its result (a created record's id) is this action's output too.
        earlier = self._applied_result(key)
        if earlier is not None:
            return False, earlier[0]
        raise ActionError(f"the CRM refused the write: {short(refused)}")

    def _once_new(
        self,
        batch: _Batch,
        key: str,
        work: Callable[[Connection], Any],
        workflow: str,
        entity: str,
        record_id: Any,
    ) -> tuple[bool, Any] | None:
        """`once` in a batch of new keys: the write alone, its key's row kept for the
        batch's commit. A write that fails (refused, or its action's own error) after
        the batch holds writes rolls all of them back (RedoBatch), since it has no
        savepoint to roll back to; before, there is nothing to lose: None, and the
        caller makes it the careful way. A failure that may pass (locked, unreachable)
        loses the batch as in any batch."""
        conn = self._batch_conn(batch)
        if key in batch.applied:
            return False, batch.applied[key]
        failure: BaseException
        try:
            ran, result = self._apply(conn, key, work, workflow, entity, record_id, keep=batch)
        except IntegrityError as exc:
            failure = exc
        except SQLAlchemyError as exc:
            self._lose(batch, exc)
            raise write_failed(exc) from None
        except Exception as exc:  # the action's own (ActionError, a bad value): any kind
            failure = exc
        else:
            _count(batch, key, ran, result)
            return ran, result
        if batch.writes:
            self._lose(batch, _Undone(f"a write failed ({short(failure)})"))
            batch.refuse_if_lost()
        try:
            conn.rollback()  # on PostgreSQL a failed statement ends the transaction
        except SQLAlchemyError as exc:
            self._lose(batch, exc)
        return None

    def _applied_result(self, key: str) -> tuple[Any] | None:
        """(result,) of an applied key, None if it was not applied."""
        assert self._applied is not None
        batch = self._open_batch()
        if batch is not None and key in batch.applied:
            return (batch.applied[key],)
        try:
            with self._reading() as conn:
                earlier = conn.execute(self._seen, {"key": key}).first()
        except SQLAlchemyError as exc:
            raise write_failed(exc) from None
        return None if earlier is None else (_loads(earlier[0]),)

    def _apply(
        self,
        conn: Connection,
        key: str,
        work: Callable[[Connection], Any],
        workflow: str,
        entity: str,
        record_id: Any,
        *,
        keep: _Batch | None = None,
    ) -> tuple[bool, Any]:
        """`work` with its key recorded; `keep`: a batch of new keys, which holds the key's
        row to insert it with the others before its commit, and whose keys are not looked
        up first."""
        if self._applied is not None and keep is None:
            seen = conn.execute(self._seen, {"key": key}).first()
            if seen is not None:
                return False, _loads(seen[0])
        result = work(conn)
        if self._applied is not None:
            row = {
                "key": key,
                "applied_at": iso_utc(self.clock()),
                "workflow": workflow,
                "entity": entity,
                "record_id": None if record_id is None else str(record_id),
                "result": json.dumps(result, default=str),
            }
            if keep is not None:
                keep.unsaved.append(row)
            else:
                conn.execute(self._record_key, row)
        return True, result

    def was_applied(self, key: str) -> bool:
        if self._applied is None:
            return False
        batch = self._open_batch()
        if batch is not None and key in batch.applied:
            return True
        with self._reading() as conn:
            query = select(self._applied.c.key).where(self._applied.c.key == key)
            return conn.execute(query).first() is not None

    def opted_out(self, addresses: list[str]) -> set[str]:
        """Which of `addresses` belong to contacts who do not want e-mail."""
        definition = self.model.get("contact")
        if not addresses or definition is None or "email_opt_out" not in definition.fields:
            return set()
        try:
            email = self._column("contact", "email")
            flag = self._column("contact", "email_opt_out")
        except ActionError:
            return set()
        lowered = [a.lower() for a in addresses]
        query = select(email).where(func.lower(email).in_(lowered), flag.is_(True))
        with self._reading() as conn:
            found = {str(row[0]).lower() for row in conn.execute(query)}
        return {a for a in addresses if a.lower() in found}

    def insert(self, conn: Connection, entity: str, values: dict[str, Any], actor: Any) -> Any:
        table = self.table(entity)
        stamped = self._stamp(entity, values, actor, created=True)
        definition = self.entity(entity)
        if definition.id_generate == "uuid" and "id" not in stamped:
            # The application makes ids here (SuiteCRM, EspoCRM): the database has none.
            stamped["id"] = str(uuid.uuid4())
        row = self._columns(entity, stamped)
        for column, value in definition.defaults.items():
            if column in table.c and column not in row:
                if isinstance(value, dict):
                    value = self._lookup(conn, value["lookup"])
                row[column] = self._bind(table.c[column], value)
        if any(isinstance(value, ClauseElement) for value in row.values()):
            result = conn.execute(insert(table).values(**row))
        else:
            # Plain values as parameters of one statement per table: compiled once for
            # each set of columns, not built and compiled anew for each record.
            statement = self._inserts.get(entity)
            if statement is None:
                statement = self._inserts[entity] = insert(table)
            result = conn.execute(statement, row)
        key = result.inserted_primary_key
        new_id = key[0] if key and key[0] is not None else stamped.get("id")
        return plain(new_id)

    def update(
        self, conn: Connection, entity: str, ids: Iterable[Any], values: dict[str, Any], actor: Any
    ) -> int:
        table = self.table(entity)
        id_list = list(ids)
        if not id_list:
            return 0
        stamped = self._stamp(entity, values, actor, created=False)
        result = conn.execute(
            update(table)
            .where(table.c.id.in_([_id(table, i) for i in id_list]))
            .values(**self._columns(entity, stamped))
        )
        return int(result.rowcount or 0)

    def delete(self, conn: Connection, entity: str, record_id: Any, actor: Any) -> int:
        table = self.table(entity)
        definition = self.entity(entity)
        marked = definition.deleted
        if marked is not None and marked.column in table.c:
            stamped = self._stamp(entity, {}, actor, created=False)
            # Marked as the CRM marks it: its flag's value, or the moment (not_null).
            mark = self.clock() if marked.not_null else marked.value
            values = {
                **self._columns(entity, stamped),
                marked.column: self._bind(table.c[marked.column], mark),
            }
            result = conn.execute(
                update(table).where(table.c.id == _id(table, record_id)).values(**values)
            )
            return int(result.rowcount or 0)
        result = conn.execute(delete(table).where(table.c.id == _id(table, record_id)))
        return int(result.rowcount or 0)

    def _lookup(self, conn: Connection, spec: dict[str, Any]) -> Any:
        """A default read from a table (`defaults: {col: {lookup: ...}}`), once."""
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._lookups:
            table = self._joins.get(spec["table"])
            if table is None:
                table = self._joins[spec["table"]] = self._reflect(spec["table"])
            wanted = spec.get("column", "id")
            for column in (wanted, *spec["where"]):
                if column not in table.c:
                    raise ActionError(f"{spec['table']} has no column {column!r}")
            query = select(table.c[wanted])
            for column, value in spec["where"].items():
                query = query.where(table.c[column] == self._bind(table.c[column], value))
            found = conn.execute(query.limit(2)).all()
            if len(found) != 1:
                raise ActionError(
                    f"defaults lookup in {spec['table']} found {len(found)} rows, not one"
                )
            self._lookups[key] = plain(found[0][0])
        return self._lookups[key]

    def dispose(self) -> None:
        self.engine.dispose()

    # -- the database itself ----------------------------------------------------------
    def now(self) -> datetime:
        """The CRM database's own clock, in UTC: what its rows are stamped against."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            query = text("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
        elif dialect == "postgresql":
            query = text("SELECT clock_timestamp()")
        elif dialect in ("mysql", "mariadb"):
            query = text("SELECT UTC_TIMESTAMP(6)")
        else:
            query = select(func.current_timestamp())
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar_one()
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def file_identity(self) -> tuple[int, int] | None:
        """Which file an SQLite CRM is (device, inode): a restored backup is a new file.

        None for a database server. FileNotFoundError while the file is gone.
        """
        path = sqlite_file(self.url)
        if path is None:
            return None
        info = path.stat()
        return info.st_dev, info.st_ino

    def reconnect(self) -> None:
        """Drop pooled connections: the next statement opens the database afresh."""
        self.engine.dispose()


class RelatedRecords:
    """Related records for one event: conditions' dotted paths and templates' relations."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.model = crm.model
        self._cache: dict[tuple[str, Any], dict[str, Any] | None] = {}

    def _get(self, entity: str, record_id: Any) -> dict[str, Any] | None:
        key = (entity, record_id)
        if key not in self._cache:
            self._cache[key] = self.crm.get(entity, record_id)
        return self._cache[key]

    def relation_entity(self, entity: str, name: str) -> str | None:
        definition = self.model.get(entity)
        relation = definition.relations.get(name) if definition else None
        return relation.entity if relation else None

    def load(self, entity: str, record: dict[str, Any], name: str) -> Any:
        definition = self.model.get(entity)
        relation = definition.relations.get(name) if definition else None
        if relation is None:
            return None
        try:
            if relation.to_many:
                return self.crm.children(relation, record)
            if relation.through is not None:
                return self._get(relation.entity, self.crm.through(relation, record))
            return self._get(relation.entity, record.get(relation.key or ""))
        except ActionError:
            return None

    def value(
        self, entity: str, prefix: tuple[str, ...], record: dict[str, Any], rest: tuple[str, ...]
    ) -> Any:
        current_entity: str | None = entity
        if prefix:
            info = self.model.resolve(entity, ".".join(prefix))
            current_entity = info.entity if info.ok else None
        return self._walk(current_entity, record, rest)

    def _walk(self, entity: str | None, record: Any, rest: tuple[str, ...]) -> Any:
        current = record
        for i, part in enumerate(rest):
            if isinstance(current, list):
                return [self._walk(entity, item, rest[i:]) for item in current]
            if not isinstance(current, dict):
                return None
            if part in current:
                value = current[part]
            elif entity is not None:
                value = self.load(entity, current, part)
            else:
                return None
            entity = self.relation_entity(entity, part) if entity else None
            current = value
        return current


def _engine(url: str, read_only: bool) -> Engine:
    """An engine on an existing CRM; a read-only SQLite CRM is opened so nothing can write.

    SQLite creates a database file on first connect: a misspelt path would become an
    empty CRM in which nothing ever changes, so a file that is not there is an error, and
    every connection opens the file `mode=rw`: a file deleted under a running daemon is a
    fault until it is back, never a new empty database.
    """
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise ValueError(MISSING_CRM_FILE)
    if path is not None and "?" not in url:
        import sqlite3
        from urllib.parse import quote

        mode = "ro" if read_only else "rw"
        uri = f"file:{quote(path.resolve().as_posix())}?mode={mode}"
        return engine_for(
            url,
            "crm",
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
        )
    # pre_ping: after a database server restarts, pooled connections are dead; each is
    # tested when taken and replaced, instead of failing the first statement.
    return engine_for(url, "crm", pool_pre_ping=path is None)


@contextmanager
def _savepoint(conn: Connection, name: str, *, release: bool) -> Iterator[None]:
    """A savepoint in `conn`'s transaction, rolled back to if the block raises.

    Plain SQL: a write's savepoint is on the hot path, and SQLAlchemy's begin_nested
    compiles each statement; the outer transaction stays SQLAlchemy's. A write's
    savepoint is not released when it succeeds (`release=False`): the batch's commit
    ends them all, which saves a round trip per write on PostgreSQL. Rolling back goes
    to the latest savepoint of `name`, so reads (which a write may make) use another.
    """
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    if release:
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")


def _id(table: Table, value: Any) -> Any:
    """An id as the id column wants it: PostgreSQL, unlike SQLite, will not compare an
    integer column with the text form crmflow keeps ids in."""
    if isinstance(table.c.id.type, Uuid) and not isinstance(value, uuid.UUID):
        try:
            return uuid.UUID(str(value))
        except ValueError:
            return value  # not a uuid: it matches no row, which is the answer
    if isinstance(value, str) and value.lstrip("-").isdigit():
        try:
            if table.c.id.type.python_type is int:
                return int(value)
        except NotImplementedError:
            pass
    return value


def _fits(column: Any, user_id: Any) -> bool:
    """Whether `user_id` can go into `column` (a user id in the CRM's own form)."""
    if user_id is None:
        return False
    try:
        numeric = column.type.python_type is int
    except NotImplementedError:
        return True
    return not numeric or isinstance(user_id, int) or str(user_id).lstrip("-").isdigit()


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _safe_url(url: str) -> str:
    """A URL fit for messages: the password never shows."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"
