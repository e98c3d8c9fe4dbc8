"""An in-process daemon over the demo CRM, with a clock the test moves."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmflow.config import load_config
from crmflow.crm.database import iso_utc
from crmflow.crm.demo import create_demo_crm
from crmflow.daemon.log import Log
from crmflow.daemon.loop import Daemon
from tests.crmkit import Database, write_rules
from tests.pgserver import least_privilege

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Rig:
    folder: Path
    crm_url: str = ""
    clock: Clock = field(default_factory=Clock)
    out: io.StringIO = field(default_factory=io.StringIO)
    daemon: Daemon | None = None

    # On PostgreSQL crmflow connects as a least-privilege role (tests.pgserver), to the
    # CRM and to a state database of its own; the rig itself reads both as the owner.
    app_crm: str = ""
    app_state: str = ""

    def __post_init__(self) -> None:
        if not self.crm_url:
            self.crm_url = f"sqlite:///{self.folder / 'crm.db'}"
        self.sql = Database(self.crm_url)
        if self.postgres:
            base, name = self.crm_url.rsplit("/", 1)
            state = f"{base}/s_{name}"
        else:
            state = f"sqlite:///{self.folder / '.crmflow' / 'state.db'}"
        self.state = Database(state)

    @property
    def postgres(self) -> bool:
        return self.crm_url.startswith("postgresql")

    def write(self, query: str, *args: Any, by: int = 1) -> None:
        """A CRM application's write: it stamps updated_at (the rig's now) and updated_by."""
        stamp = iso_utc(self.clock.now)
        self.sql(query.replace("{stamp}", f"'{stamp}'").replace("{by}", str(by)), *args)

    def rules(self, files: dict[str, str]) -> None:
        write_rules(self.folder / "rules", files)

    def configure(self, extra: str = "") -> None:
        if self.postgres and "change_capture: triggers" in extra:
            grant_triggers(self.crm_url, self.app_crm)
        lines = [
            f"crm: {self.app_crm if self.postgres else 'sqlite:///crm.db'}",
            *([f"state: {self.app_state}"] if self.postgres else []),
            "rules: rules/",
            "timezone: Europe/Berlin",
            "poll_interval: 1s",
            "overlap: 10s",
            "email: {transport: maildir, path: mail/}",
            "retry: {base_delay: 1s, max_attempts: 3}",
        ]
        text = "\n".join(lines) + "\n" + textwrap.dedent(extra)
        (self.folder / "crmflow.yaml").write_text(text, encoding="utf-8")

    def start(self, **kwargs: Any) -> Daemon:
        if self.daemon is not None:  # a restart: the old one lets go of the lead
            self.daemon.close()
        config = load_config(self.folder / "crmflow.yaml")
        # The application (rig.write) stamps rows by the rig's clock: the database's
        # clock, as far as the daemon's window is concerned, is the same one.
        self.daemon = Daemon(
            config,
            clock=self.clock,
            log=Log("plain", stream=self.out),
            sleep=lambda s: None,
            db_clock=self.clock,
        )
        self.daemon.start(**kwargs)
        return self.daemon

    def close(self) -> None:
        """Let go of every connection: left to the garbage collector, open PostgreSQL
        connections are finalised at random moments of later tests."""
        if self.daemon is not None:
            self.daemon.close()
            self.daemon = None
        self.sql.dispose()
        self.state.dispose()

    def tick(self, **delta: float) -> Any:
        if delta:
            self.clock.advance(**delta)
        assert self.daemon is not None
        return self.daemon.tick()

    def history(self, workflow: str | None = None) -> list[tuple[str, str]]:
        where = f"WHERE workflow = '{workflow}'" if workflow else ""
        return [
            (r[0], r[1])
            for r in self.state(f"SELECT outcome, detail FROM crmflow_history {where} ORDER BY id")
        ]


def make_rig(folder: Path, crm_url: str | None = None) -> Rig:
    rig = Rig(folder, crm_url or "")
    create_demo_crm(rig.crm_url, now=START - timedelta(days=1))
    if rig.postgres:
        rig.app_crm, rig.app_state = least_privilege(rig.crm_url)
    rig.configure()
    return rig


def grant_triggers(owner_url: str, app_url: str) -> None:
    """What triggers mode needs beyond polling (README, Production)."""
    role = app_url.split("://", 1)[1].split("@", 1)[0]
    Database(owner_url)(
        f'GRANT CREATE ON SCHEMA public TO "{role}"; '
        f'GRANT TRIGGER ON ALL TABLES IN SCHEMA public TO "{role}"'
    )


# A workflow that writes one activity per changed deal, and DEALS deals for it: the
# batch and burst tests (tests/test_batches.py, tests/test_burst.py) share them.
ON_DEAL_UPDATE = """
id: watch
entity: deal
trigger: {on: updated, fields: [probability]}
actions:
  - create: {entity: activity, values: {kind: comment, subject: "watch {{ deal.id }}",
             related_entity: note, related_id: "{{ deal.id }}"}}
"""
DEALS = 30


def watched_deals(folder: Path, crm_url: str | None = None) -> Rig:
    """A rig with ON_DEAL_UPDATE and DEALS more deals (ids 700 on), not started."""
    rig = make_rig(folder, crm_url)
    rig.rules({"w.yaml": ON_DEAL_UPDATE})
    rig.write(
        "INSERT INTO deals (id, name, probability, updated_at) VALUES "
        + ", ".join(f"({700 + n}, 'd{n}', 1, {{stamp}})" for n in range(DEALS))
    )
    return rig
