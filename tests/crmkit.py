"""A demo CRM project in a temporary folder, and `crmflow eval` run in-process against it."""

from __future__ import annotations

import io
import json
import sqlite3
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmflow.config import load_config
from crmflow.demo import create_demo_crm
from crmflow.effects.base import Services
from crmflow.eval_stream import run_eval

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@dataclass
class Project:
    folder: Path
    sleeps: list[float] = field(default_factory=list)
    dns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.folder / "crm.db"

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, args).fetchall()

    def state_sql(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.folder / ".crmflow" / "state.db") as conn:
            return conn.execute(query).fetchall()

    def rules(self, files: dict[str, str]) -> None:
        folder = self.folder / "rules"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
        for name, text in files.items():
            (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")

    def configure(self, extra: str = "") -> None:
        base = textwrap.dedent("""\
            crm: sqlite:///crm.db
            rules: rules/
            timezone: Europe/Berlin
            retry: {base_delay: 10ms, max_attempts: 4}
            """)
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


def make_project(folder: Path) -> Project:
    create_demo_crm(folder / "crm.db", now=NOW)
    project = Project(folder)
    project.configure()
    return project


def actions(plan: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    found = next(r for r in plan["rules"] if r["rule"] == rule)
    assert found["matched"], found
    return found["actions"]
