"""A demo CRM project in a temporary folder, and `crmflow eval` run in-process against it."""

from __future__ import annotations

import io
import json
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from crmflow.commands.eval_stream import run_eval
from crmflow.config import load_config
from crmflow.crm.demo import create_demo_crm
from crmflow.engine.effects.base import Services

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def write_rules(folder: Path, files: dict[str, str]) -> None:
    """Replace the workflow files in `folder` with `files` (name -> YAML text)."""
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


class Database:
    """Plain SQL against a test database, `?` placeholders on every backend."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def __call__(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.engine.dialect.name == "postgresql":
            query = query.replace("%", "%%").replace("?", "%s")
        with self.engine.begin() as conn:
            result = (
                conn.exec_driver_sql(query, tuple(args)) if args else conn.exec_driver_sql(query)
            )
            return [tuple(row) for row in result] if result.returns_rows else []

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def row(self, table: str, record_id: int) -> dict[str, Any]:
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(f"SELECT * FROM {table} WHERE id = {int(record_id)}")
            return dict(result.mappings().one())


@dataclass
class Project:
    folder: Path
    crm_url: str = ""
    sleeps: list[float] = field(default_factory=list)
    dns: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.crm_url:
            self.crm_url = f"sqlite:///{self.folder / 'crm.db'}"
        self.sql = Database(self.crm_url)
        self.state_db = Database(
            self.crm_url if self.postgres else f"sqlite:///{self.folder / '.crmflow' / 'state.db'}"
        )

    def close(self) -> None:
        """Let go of the test's own connections (crmflow's are closed by each command)."""
        self.sql.dispose()
        self.state_db.dispose()

    @property
    def db(self) -> Path:
        return self.folder / "crm.db"

    @property
    def postgres(self) -> bool:
        return self.crm_url.startswith("postgresql")

    def state_sql(self, query: str) -> list[tuple[Any, ...]]:
        return self.state_db(query)

    def rules(self, files: dict[str, str]) -> None:
        write_rules(self.folder / "rules", files)

    def configure(self, extra: str = "") -> None:
        crm = "sqlite:///crm.db" if not self.postgres else self.crm_url
        base = textwrap.dedent(f"""\
            crm: {crm}
            rules: rules/
            timezone: Europe/Berlin
            retry: {{base_delay: 10ms, max_attempts: 4}}
            """)
        if self.postgres:
            base += f"state: {self.crm_url}\n"
        text = base + textwrap.dedent(extra)
        if "email:" not in text:
            text += "email: {transport: maildir, path: mail/, from: crmflow@demo.example}\n"
        (self.folder / "crmflow.yaml").write_text(text, encoding="utf-8")

    def eval(
        self, *events: dict[str, Any], dry_run: bool = False, now: str = "2026-11-22T10:00:00Z"
    ) -> tuple[int, list[dict[str, Any]], str]:
        config = load_config(self.folder / "crmflow.yaml")
        out, err = io.StringIO(), io.StringIO()
        services = Services(
            config,
            sleep=self.sleeps.append,
            resolve=lambda host, port: self.dns[host],
            clock=lambda: NOW,
        )
        source = io.StringIO("\n".join(json.dumps(e) for e in events) + "\n")
        code = run_eval(
            config,
            config.rules,
            source,
            out,
            dry_run=dry_run,
            fmt="json",
            now=now,
            seed=1,
            stderr=err,
            services=services,
        )
        plans = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
        return code, plans, err.getvalue()

    def mails(self) -> list[str]:
        folder = self.folder / "mail" / "new"
        return [p.read_text() for p in sorted(folder.iterdir())] if folder.exists() else []


def make_project(folder: Path, crm_url: str | None = None) -> Project:
    url = crm_url or f"sqlite:///{folder / 'crm.db'}"
    create_demo_crm(url, now=NOW)
    project = Project(folder, url)
    project.configure()
    return project


def actions(plan: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    found = next(r for r in plan["rules"] if r["rule"] == rule)
    assert found["matched"], found
    return found["actions"]
