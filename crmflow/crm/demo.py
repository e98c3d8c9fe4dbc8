"""`crmflow init`: a demo CRM (SQLite, believable sample data), its crmflow.yaml, and the
example workflows, ready for `crmflow eval` and `crmflow run`."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

import crmflow
from crmflow.crm.database import iso_utc
from crmflow.drivers import engine_for
from crmflow.errors import ConfigError
from crmflow.rules.entities import EntityModel, builtin_model

_TYPES = {"integer": Integer, "number": Float, "boolean": Boolean}
CONFIG_TEXT = """\
# crmflow configuration for the demo CRM, written by `crmflow init`.
# yaml-language-server: $schema=schemas/config.schema.json
crm: sqlite:///crm.db
state: sqlite:///.crmflow/state.db
rules: rules/
timezone: Europe/Berlin
poll_interval: 2s
# Working time for business days (2bd) and `within: business_hours`: Berlin's holidays.
calendar: {country: DE, subdivision: BE, hours: "09:00-17:00"}
# The roles users have in this CRM: lint checks every role:NAME recipient against them.
roles: [sales, management, support, project_manager]
email:
  transport: maildir          # every e-mail lands as a file in mail/new/
  path: mail/
  from: crmflow@demo-crm.example
webhooks:
  allow: ["https://hooks.example.com/*"]
  # Sign webhooks (Standard Webhooks) with a secret from this environment variable;
  # once named, crmflow refuses to start while it is unset.
  # secret_env: CRMFLOW_WEBHOOK_SECRET
"""


def schema(model: EntityModel) -> MetaData:
    """Tables of the built-in model: plural names, integer ids, ISO text for times."""
    metadata = MetaData()
    for name in model.names():
        entity = model.entities[name]
        columns = [Column("id", Integer, primary_key=True, autoincrement=True)]
        for field, kind in entity.fields.items():
            if field == "id":
                continue
            columns.append(Column(entity.column(field), _TYPES.get(kind, Text)))
        table = Table(entity.table, metadata, *columns)
        Index(f"ix_{entity.table}_updated_at", table.c.updated_at)
    return metadata


def _touch_triggers(model: EntityModel) -> list[str]:
    """Adding an activity stamps last_activity_at (and updated_at) on its record."""
    statements = []
    activities = model.entities["activity"].table
    for name in model.names():
        entity = model.entities[name]
        if "last_activity_at" not in entity.fields:
            continue
        statements.append(f"""
            CREATE TRIGGER IF NOT EXISTS {activities}_touch_{entity.table}
            AFTER INSERT ON {activities}
            WHEN NEW.related_entity = '{name}'
            BEGIN
              UPDATE {entity.table}
                 SET last_activity_at = COALESCE(NEW.at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                     updated_by = NEW.owner_id
               WHERE id = NEW.related_id;
            END""")
    return statements


def _stamp_triggers(model: EntityModel) -> list[str]:
    """A safety net of the demo: a write that forgets updated_at still gets one.

    SPEC-wise every writer stamps its rows; a hand-typed `UPDATE deals SET stage = 'won'`
    in sqlite3 is caught here, so the daemon sees it (SQLite's recursive triggers are off,
    so the inner UPDATE does not fire again).
    """
    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    statements = []
    for name in model.names():
        table = model.entities[name].table
        statements.append(f"""
            CREATE TRIGGER IF NOT EXISTS {table}_stamp_update AFTER UPDATE ON {table}
            WHEN NEW.updated_at IS OLD.updated_at
            BEGIN UPDATE {table} SET updated_at = {now} WHERE id = NEW.id; END""")
        statements.append(f"""
            CREATE TRIGGER IF NOT EXISTS {table}_stamp_insert AFTER INSERT ON {table}
            WHEN NEW.updated_at IS NULL
            BEGIN UPDATE {table} SET updated_at = {now}, created_at = COALESCE(NEW.created_at,
                  {now}) WHERE id = NEW.id; END""")
    return statements


def _pg_triggers(model: EntityModel) -> list[str]:
    """The same two behaviours for a PostgreSQL demo CRM, in PL/pgSQL."""
    now = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    statements = [
        f"""
        CREATE OR REPLACE FUNCTION crmflow_demo_stamp() RETURNS trigger AS $$
        BEGIN
          IF TG_OP = 'INSERT' AND NEW.updated_at IS NULL THEN
            NEW.updated_at := {now};
            NEW.created_at := COALESCE(NEW.created_at, NEW.updated_at);
          ELSIF TG_OP = 'UPDATE' AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := {now};
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql"""
    ]
    touched = [n for n in model.names() if "last_activity_at" in model.entities[n].fields]
    branches = "\n".join(
        f"""          IF NEW.related_entity = '{n}' THEN UPDATE {model.entities[n].table}
              SET last_activity_at = COALESCE(NEW.at, {now}), updated_at = {now},
                  updated_by = NEW.owner_id WHERE id = NEW.related_id; END IF;"""
        for n in touched
    )
    statements.append(f"""
        CREATE OR REPLACE FUNCTION crmflow_demo_touch() RETURNS trigger AS $$
        BEGIN
{branches}
          RETURN NEW;
        END $$ LANGUAGE plpgsql""")
    for name in model.names():
        table = model.entities[name].table
        statements.append(
            f"CREATE TRIGGER {table}_stamp BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION crmflow_demo_stamp()"
        )
    activities = model.entities["activity"].table
    statements.append(
        f"CREATE TRIGGER {activities}_touch AFTER INSERT ON {activities} "
        "FOR EACH ROW EXECUTE FUNCTION crmflow_demo_touch()"
    )
    return statements


def create_demo_crm(
    target: Path | str, *, now: datetime | None = None, model: EntityModel | None = None
) -> dict[str, int]:
    """Create the demo CRM at `target` (a SQLite file, or a database URL); rows per table."""
    model = model or builtin_model()
    url = target if isinstance(target, str) and "://" in target else f"sqlite:///{target}"
    engine = engine_for(url, "crm")
    metadata = schema(model)
    metadata.create_all(engine)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for entity, rows in sample_data(now or datetime.now(UTC)).items():
            table = metadata.tables[model.entities[entity].table]
            for row in rows:
                conn.execute(insert(table).values(**row))
            counts[table.name] = len(rows)
        # Triggers come after the sample data, which carries its own (past) stamps.
        if engine.dialect.name == "postgresql":
            triggers = _pg_triggers(model)
        else:
            triggers = _touch_triggers(model) + _stamp_triggers(model)
        for statement in triggers:
            conn.execute(text(statement))
    engine.dispose()
    return counts


# SQLite keeps a database's uncommitted or unmerged pages beside it: these go with the file.
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def init_project(
    folder: Path,
    *,
    force: bool = False,
    rules_source: Path | None = None,
    schemas_source: Path | None = None,
) -> list[Path]:
    """Write crm.db, crmflow.yaml, rules/, schemas/ and mail/ into `folder`; the paths written.

    Refuses to replace crm.db or crmflow.yaml unless `force`; keeps an existing rules/,
    schemas/ or mail/. All or nothing: everything is built in a staging folder and moved
    into place at the end, and a failure on the way removes what this call wrote and
    puts back what it replaced, so `init` can simply be run again.
    """
    crm, config = folder / "crm.db", folder / "crmflow.yaml"
    if not force:
        existing = [p.name for p in (crm, config) if p.exists()]
        if existing:
            raise ConfigError(
                f"{folder}: {', '.join(existing)} already exist; "
                "pass --force to replace the demo CRM"
            )
    for name in ("rules", "schemas", "mail"):
        if (folder / name).exists() and not (folder / name).is_dir():
            raise ConfigError(f"{folder / name}: exists and is not a folder")
    # The example workflows, and the JSON Schemas their `$schema=../schemas/...` modelines
    # (and crmflow.yaml's) name: copies of crmflow's own, so every modeline finds its file.
    sources = {
        "rules": rules_source or shipped("rules"),
        "schemas": schemas_source or shipped("schemas"),
    }
    missing = [str(s) for s in sources.values() if not s.is_dir()]
    if missing:
        raise ConfigError(f"example files not found: {', '.join(missing)}; reinstall crmflow")
    try:
        with _Staging(folder) as staging:
            create_demo_crm(staging.path / "crm.db")
            (staging.path / "crmflow.yaml").write_text(CONFIG_TEXT, encoding="utf-8")
            for name, source in sources.items():
                if not (folder / name).exists():
                    shutil.copytree(source, staging.path / name, copy_function=shutil.copyfile)
            if not (folder / "mail").exists():
                (staging.path / "mail").mkdir()
            # A new CRM makes crmflow's snapshots of the old one wrong: the state starts over.
            staging.remove(folder / ".crmflow" / "state.db")
            return staging.commit()
    except (OSError, SQLAlchemyError) as exc:
        raise ConfigError(f"{folder}: cannot create the demo CRM: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """One line: shutil.Error lists every file that failed, SQLAlchemy appends its SQL."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        source, _, why = exc.args[0][0]
        return f"{source}: {why}"
    cause = getattr(exc, "orig", None) or exc
    return str(cause).splitlines()[0] if str(cause) else type(cause).__name__


class _Staging:
    """Files built in a hidden folder inside `folder`, then moved into place in one go.

    Renames within one folder do not copy and cannot half-fail a file. On any exception the
    exit undoes the moves, restores what was replaced or removed (kept aside until the
    end), and removes the folders it created; it never deletes a file it did not write.
    """

    path: Path  # the staging folder, made on entry

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._created_dirs: list[Path] = []  # deepest first
        self._aside: list[tuple[Path, Path]] = []  # (original place, where it waits)
        self._placed: list[Path] = []
        self._removals: list[Path] = []

    def __enter__(self) -> _Staging:
        missing = self.folder
        while not missing.exists():
            self._created_dirs.append(missing)
            missing = missing.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=".crmflow-init-", dir=self.folder))
        except BaseException:
            self._remove_created_dirs()
            raise
        return self

    def remove(self, path: Path) -> None:
        """Remove `path` (and its SQLite side files) when the staged files go into place."""
        self._removals.append(path)

    def commit(self) -> list[Path]:
        """Move every staged entry into `folder`, replacing what is there; the new paths."""
        aside = self.path / ".replaced"
        aside.mkdir()
        staged = sorted(p.name for p in self.path.iterdir() if p != aside)
        displaced = [self.folder / name for name in staged] + self._removals
        for path in displaced:
            for victim in (path, *(path.with_name(path.name + s) for s in _SQLITE_SIDECARS)):
                if victim.exists() or victim.is_symlink():
                    keep = aside / str(len(self._aside))
                    victim.replace(keep)
                    self._aside.append((victim, keep))
        for name in staged:
            (self.path / name).replace(self.folder / name)
            self._placed.append(self.folder / name)
        return self._placed

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            for path in reversed(self._placed):
                _delete(path)
            for original, keep in reversed(self._aside):
                keep.replace(original)
        shutil.rmtree(self.path, ignore_errors=True)
        if kind is not None:
            self._remove_created_dirs()

    def _remove_created_dirs(self) -> None:
        for folder in self._created_dirs:
            with contextlib.suppress(OSError):  # not empty: something else wrote there
                folder.rmdir()


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def shipped(name: str) -> Path:
    """crmflow's own rules/ or schemas/: inside the installed package, else the checkout's."""
    # Anchored on the package, not on this module, which may move within it.
    package = Path(crmflow.__file__).resolve().parent
    packaged = package / "data" / name
    return packaged if packaged.is_dir() else package.parent / name


def example_rules_folder() -> Path:
    """The example workflows: shipped in the package, or the checkout's rules/."""
    return shipped("rules")


def sample_data(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Believable records, dated relative to `now` so time-based workflows have work."""

    def ago(days: float) -> str:
        return iso_utc(now - timedelta(days=days))

    def day(offset: int) -> str:
        return (now + timedelta(days=offset)).date().isoformat()

    def stamp(
        row: dict[str, Any], created: float, updated: float | None = None, by: int | None = 1
    ) -> dict[str, Any]:
        return {
            **row,
            "created_at": ago(created),
            "updated_at": ago(updated if updated is not None else created),
            "updated_by": by,
        }

    users = [
        stamp(
            {
                "name": "Lena Fischer",
                "email": "lena.fischer@demo-crm.example",
                "phone": "+49 30 5550 1001",
                "role": "sales",
                "active": True,
            },
            400,
        ),
        stamp(
            {
                "name": "Jonas Weber",
                "email": "jonas.weber@demo-crm.example",
                "phone": "+49 30 5550 1002",
                "role": "sales",
                "active": True,
            },
            380,
        ),
        stamp(
            {
                "name": "Priya Shah",
                "email": "priya.shah@demo-crm.example",
                "phone": "+49 30 5550 1003",
                "role": "management",
                "active": True,
            },
            500,
        ),
        stamp(
            {
                "name": "Marco Rossi",
                "email": "marco.rossi@demo-crm.example",
                "phone": "+49 30 5550 1004",
                "role": "management",
                "active": True,
            },
            450,
        ),
        stamp(
            {
                "name": "Aisha Khan",
                "email": "aisha.khan@demo-crm.example",
                "phone": "+49 30 5550 1005",
                "role": "support",
                "active": True,
            },
            300,
        ),
        stamp(
            {
                "name": "Tom Becker",
                "email": "tom.becker@demo-crm.example",
                "phone": "+49 30 5550 1006",
                "role": "project_manager",
                "active": True,
            },
            350,
        ),
    ]
    companies = [
        ("Nordwind GmbH", "DE", "DE811234567", "Ostwall 8", "28195", "Bremen", 1),
        ("Lumière SARL", "FR", None, "12 rue de Rivoli", "75004", "Paris", 2),
        ("Alpenblick AG", "AT", "ATU12345678", "Mariahilfer Str. 1", "1060", "Wien", 1),
        (
            "Delta Logistics BV",
            "NL",
            "NL123456789B01",
            "Keizersgracht 100",
            "1015 CV",
            "Amsterdam",
            2,
        ),
        ("Sunrise Ltd", "GB", "GB123456789", "1 King Street", "EC2V 8AU", "London", 1),
        ("Metro Foods SpA", "IT", "IT12345678901", "Via Roma 10", "20121", "Milano", 2),
        ("Iberia Solar SL", "ES", "ESB12345678", "Calle Mayor 5", "28013", "Madrid", 1),
        ("Acme Corporation", "US", None, "100 Main St", "94105", "San Francisco", 2),
    ]
    company_rows = [
        stamp(
            {
                "name": n,
                "country": c,
                "vat_id": v,
                "billing_street": s,
                "billing_zip": z,
                "billing_city": city,
                "billing_country": c,
                "owner_id": o,
                "email": f"info@{n.split()[0].lower().replace('è', 'e')}.example",
                "industry": [
                    "logistics",
                    "retail",
                    "tourism",
                    "logistics",
                    "energy",
                    "food",
                    "energy",
                    "manufacturing",
                ][i],
                "website": f"https://{n.split()[0].lower().replace('è', 'e')}.example",
            },
            300 - i * 10,
            30 - i,
        )
        for i, (n, c, v, s, z, city, o) in enumerate(companies)
    ]
    people = [
        ("Anna", "Schulz", 1, "Head of Purchasing"),
        ("Felix", "Hoffmann", 1, "CTO"),
        ("Camille", "Martin", 2, "Directrice"),
        ("Ada", "Lovelace", 3, "Head of IT"),
        ("Lukas", "Gruber", 3, "Buyer"),
        ("Sanne", "de Vries", 4, "Operations"),
        ("Oliver", "Smith", 5, "Managing Director"),
        ("Emily", "Jones", 5, "Office Manager"),
        ("Giulia", "Bianchi", 6, "CFO"),
        ("Javier", "García", 7, "CEO"),
        ("John", "Doe", 8, "Procurement"),
        ("Mia", "Wagner", 1, "Marketing"),
    ]
    contacts = []
    for i, (first, last, company, title) in enumerate(people):
        domain = company_rows[company - 1]["email"].split("@")[1]
        contacts.append(
            stamp(
                {
                    "first_name": first,
                    "last_name": last,
                    "name": f"{first} {last}",
                    "title": title,
                    "email": f"{first.lower()}.{last.lower().replace(' ', '')}@{domain}".replace(
                        "í", "i"
                    ),
                    "phone": f"+49 30 5550{i:03d}",
                    "company_id": company,
                    "owner_id": company_rows[company - 1]["owner_id"],
                    "email_opt_out": i == 11,
                    "street": company_rows[company - 1]["billing_street"],
                    "zip": company_rows[company - 1]["billing_zip"],
                    "city": company_rows[company - 1]["billing_city"],
                    "country": company_rows[company - 1]["billing_country"],
                    "last_activity_at": ago(3 + i * 4),
                },
                200 - i * 5,
                10 + i,
            )
        )
    leads = [
        ("Berg AG", "info@berg.example", "new", 2, None, 3),
        ("Kaiser Bau GmbH", "kontakt@kaiserbau.example", "new", 1, None, 20),
        ("Polar Software Oy", "sales@polar.example", "contacted", 1, 21, 40),
        ("Tulip Flowers BV", "hello@tulip.example", "contacted", 2, 5, 30),
        ("Hanse Consulting", "office@hanse.example", "qualified", 1, 16, 60),
        ("Blue Ocean Ltd", "team@blueocean.example", "qualified", 2, 2, 25),
        ("Sol y Mar SL", "info@solymar.example", "converted", 1, 40, 90),
        ("Cheap Watches 4U", "spam@cheap.example", "junk", 2, None, 15),
        ("Fjord Fisheries AS", "post@fjord.example", "new", 1, None, 2),
        ("Danube Tech Kft", "info@danube.example", "contacted", 2, 30, 45),
    ]
    lead_rows = [
        stamp(
            {
                "name": n,
                "company_name": n,
                "email": e,
                "status": s,
                "owner_id": o,
                "source": ["web", "fair", "referral", "cold call"][i % 4],
                "phone": f"+49 40 777{i:03d}",
                "last_activity_at": ago(a) if a is not None else None,
            },
            c,
            min(c, a or c),
        )
        for i, (n, e, s, o, a, c) in enumerate(leads)
    ]
    deals = [
        ("Nordwind fleet tracking", 48000, 20, "qualification", 1, 1, 1),
        ("Lumière shop relaunch", 23000, 40, "proposal", 2, 3, 2),
        ("Alpenblick booking system", 120000, 60, "negotiation", 3, 4, 1),
        ("Delta warehouse sensors", 260000, 85, "negotiation", 4, 6, 2),
        ("Sunrise intranet", 15000, 100, "won", 5, 7, 1),
        ("Metro Foods analytics", 90000, 0, "lost", 6, 9, 2),
        ("Iberia Solar monitoring", 340000, 70, "proposal", 7, 10, 1),
        ("Acme support renewal", 36000, 90, "negotiation", 8, 11, 2),
    ]
    deal_rows = [
        stamp(
            {
                "name": n,
                "amount": amount,
                "currency": "EUR",
                "probability": p,
                "stage": st,
                "company_id": co,
                "contact_id": ct,
                "owner_id": o,
                "expected_close_date": day(30 + i * 7),
                "last_activity_at": ago(2 + i * 3),
            },
            120 - i * 10,
            5 + i,
        )
        for i, (n, amount, p, st, co, ct, o) in enumerate(deals)
    ]
    quotes = [
        stamp(
            {
                "number": f"Q-{now.year}-{i + 1:03d}",
                "name": f"Offer {deal_rows[d]['name']}",
                "amount": deal_rows[d]["amount"],
                "currency": "EUR",
                "status": s,
                "deal_id": d + 1,
                "company_id": deal_rows[d]["company_id"],
                "contact_id": deal_rows[d]["contact_id"],
                "owner_id": deal_rows[d]["owner_id"],
                "valid_until": day(30),
            },
            20 - i * 3,
        )
        for i, (d, s) in enumerate(
            [(1, "sent"), (2, "sent"), (3, "draft"), (4, "accepted"), (6, "sent"), (5, "rejected")]
        )
    ]
    projects = [
        stamp(
            {
                "name": n,
                "stage": s,
                "budget": b,
                "company_id": c,
                "contact_id": ct,
                "owner_id": 6,
                "start_date": day(-60 + i * 20),
                "due_date": day(30 + i * 20),
            },
            90 - i * 10,
            4 + i,
        )
        for i, (n, s, b, c, ct) in enumerate(
            [
                ("Sunrise intranet rollout", "in_progress", 15000, 5, 7),
                ("Nordwind app pilot", "planning", 8000, 1, 1),
                ("Alpenblick website", "feedback", 22000, 3, 4),
                ("Delta sensor study", "done", 5000, 4, 6),
            ]
        )
    ]
    tasks = [
        stamp(
            {
                "title": t,
                "status": s,
                "estimated_hours": e,
                "logged_hours": lg,
                "assignee_id": a,
                "owner_id": 6,
                "project_id": p,
                "due_date": day(d),
                "priority": "normal",
            },
            30 - i * 2,
            1 + i,
        )
        for i, (t, s, e, lg, a, p, d) in enumerate(
            [
                ("Set up SSO", "in_progress", 16, 12.5, 6, 1, 5),
                ("Migrate documents", "open", 24, 0, 1, 1, 14),
                ("Design review", "in_progress", 8, 7.5, 6, 3, 3),
                ("Sensor report", "done", 10, 11, 2, 4, -10),
                ("Kick-off workshop", "open", 4, 0, 6, 2, 7),
            ]
        )
    ]
    activities = [
        stamp(
            {
                "kind": k,
                "subject": s,
                "at": ago(a),
                "related_entity": e,
                "related_id": r,
                "contact_id": c,
                "owner_id": o,
                "duration_minutes": m,
            },
            a,
            a,
            o,
        )
        for k, s, a, e, r, c, o, m in [
            ("call", "Intro call", 12, "deal", 1, 1, 1, 20),
            ("meeting", "Requirements workshop", 9, "deal", 3, 4, 1, 90),
            ("email", "Sent proposal", 6, "deal", 7, 10, 1, None),
            ("comment", "Budget approved by CFO", 4, "deal", 4, 6, 2, None),
            ("call", "Follow-up", 2, "deal", 8, 11, 2, 15),
            ("call", "First contact", 5, "lead", 4, None, 2, 10),
            ("meeting", "Quarterly review", 20, "contact", 7, 7, 1, 60),
        ]
    ]
    contracts = [
        stamp(
            {
                "name": n,
                "kind": k,
                "status": s,
                "value": v,
                "currency": "EUR",
                "start_date": day(sd),
                "end_date": day(sd + 365),
                "signed_by_customer": sc,
                "signed_by_us": su,
                "company_id": c,
                "contact_id": ct,
                "owner_id": o,
            },
            100 - i * 10,
            8 + i,
        )
        for i, (n, k, s, v, sd, sc, su, c, ct, o) in enumerate(
            [
                ("Sunrise hosting", "service", "active", 12000, -200, True, True, 5, 7, 1),
                ("Acme support gold", "service", "active", 36000, -340, True, True, 8, 11, 2),
                ("Alpenblick licence", "license", "negotiation", 9000, 14, True, False, 3, 4, 1),
                ("Nordwind maintenance", "service", "draft", 6000, 30, False, False, 1, 1, 1),
                ("Metro Foods pilot", "license", "expired", 3000, -500, True, True, 6, 9, 2),
            ]
        )
    ]
    cases = [
        stamp(
            {
                "number": f"C-{1040 + i}",
                "subject": s,
                "description": d,
                "status": st,
                "priority": p,
                "company_id": c,
                "contact_id": ct,
                "owner_id": 5,
            },
            10 - i * 2,
            1 + i,
            5,
        )
        for i, (s, d, st, p, c, ct) in enumerate(
            [
                (
                    "Invoice shows the wrong VAT rate",
                    "Invoice 2026-118 uses 19 % instead of 0 %.",
                    "open",
                    "high",
                    2,
                    3,
                ),
                (
                    "Login fails after update",
                    "Since Monday the app rejects SSO logins.",
                    "new",
                    "urgent",
                    5,
                    7,
                ),
                (
                    "Question about renewal",
                    "When does the support contract renew?",
                    "resolved",
                    "normal",
                    8,
                    11,
                ),
            ]
        )
    ]
    notifications = [
        stamp(
            {
                "user_id": 3,
                "subject": "Welcome to the demo CRM",
                "body": "Deals, leads and projects are waiting for workflows.",
                "read_at": None,
            },
            1,
            1,
            None,
        ),
    ]
    return {
        "user": users,
        "company": company_rows,
        "contact": contacts,
        "lead": lead_rows,
        "deal": deal_rows,
        "quote": quotes,
        "project": projects,
        "task": tasks,
        "activity": activities,
        "contract": contracts,
        "case": cases,
        "notification": notifications,
    }
