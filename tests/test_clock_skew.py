"""Nothing lost to clocks: writes stamped behind, ahead, with offsets, under any zone.

CRM application servers stamp `updated_at` by their own clocks, which drift, and some
write local time with an offset. Each case writes one change and counts how often the
daemon evaluated it (the history's `fired` decisions of a workflow that takes every
deal change): exactly once, by the next poll. "Now" is the real clock, which the CRM
database shares.
"""

from __future__ import annotations

import io
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from crmflow.config import load_config
from crmflow.crm.database import iso_utc
from crmflow.crm.demo import create_demo_crm
from crmflow.daemon.log import Log
from crmflow.daemon.loop import Daemon
from tests.crmkit import Database, write_rules

SEEN = """\
id: seen
entity: deal
trigger: {on: [created, updated]}
actions:
  - warn: {message: "seen {{ deal.name }}"}
"""

# A PostgreSQL CRM whose stamps are `timestamptz`, as Twenty's and many others' are.
PG_DEALS = """
CREATE TABLE deals (id serial PRIMARY KEY, name text, amount numeric, currency text,
    probability integer, stage text, company_id integer, contact_id integer,
    owner_id integer, last_activity_at timestamptz, created_at timestamptz,
    updated_at timestamptz, updated_by integer);
CREATE INDEX deals_updated_at ON deals (updated_at);
INSERT INTO deals (name, stage, amount, created_at, updated_at)
    SELECT 'deal ' || n, 'new', 1000 * n, now() - interval '3 days', now() - interval '3 days'
    FROM generate_series(1, 5) AS n;
"""


def offset(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


# (name, how the application stamps the row, given the real now)
Stamp = Callable[[datetime], Any]
CASES: list[tuple[str, Stamp]] = [
    ("normal", lambda now: now),
    ("two minutes behind", lambda now: now - timedelta(minutes=2)),
    ("an hour ahead", lambda now: now + timedelta(hours=1)),
    ("normal after the one ahead", lambda now: now),
    ("at -05:00", lambda now: now.astimezone(offset(-5)).isoformat(timespec="milliseconds")),
    ("at +09:00", lambda now: now.astimezone(offset(9)).isoformat(timespec="milliseconds")),
    (
        "at -12:00, a minute behind",
        lambda now: (now - timedelta(minutes=1)).astimezone(offset(-12)).isoformat(),
    ),
    # Text without an offset is UTC (SPEC §6); a `timestamptz` would read it as the
    # session's local time, so it is written with its offset there.
    ("space form, seconds", lambda now: now.strftime("%Y-%m-%d %H:%M:%S+00:00")),
    (
        "space form at -05:00",
        lambda now: now.astimezone(offset(-5)).strftime("%Y-%m-%d %H:%M:%S-05:00"),
    ),
]


class Crm:
    """The CRM under test, its daemon (in this process, real clocks) and its history."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url
        self.sql = Database(url)
        self.postgres = url.startswith("postgresql")
        write_rules(folder / "rules", {"seen.yaml": SEEN})
        (folder / "crmflow.yaml").write_text(
            textwrap.dedent(f"""\
            crm: {url}
            state: sqlite:///{folder / "state.db"}
            rules: rules/
            timezone: Europe/Berlin
            poll_interval: 1s
            """),
            encoding="utf-8",
        )
        self.out = io.StringIO()
        self.daemon: Daemon | None = None

    def start(self) -> Daemon:
        config = load_config(self.folder / "crmflow.yaml")
        self.daemon = Daemon(config, log=Log("plain", stream=self.out))
        self.daemon.start()
        return self.daemon

    def stamp_write(self, record_id: int, name: str, stamp: Any) -> None:
        """What an application server does: change the row, stamp it by its clock."""
        if isinstance(stamp, datetime):
            stamp = stamp if self.postgres else iso_utc(stamp)
        elif not self.postgres:
            stamp = stamp.removesuffix("+00:00")
        cast = "CAST(? AS timestamptz)" if self.postgres and isinstance(stamp, str) else "?"
        self.sql(
            f"UPDATE deals SET name = ?, updated_at = {cast} WHERE id = ?", name, stamp, record_id
        )

    def evaluations(self) -> dict[str, int]:
        """How often each deal name was evaluated (fired) by the daemon."""
        assert self.daemon is not None
        rows = Database(f"sqlite:///{self.folder / 'state.db'}")(
            "SELECT detail FROM crmflow_history WHERE workflow = 'seen' AND outcome = 'done'"
        )
        counts: dict[str, int] = {}
        for (detail,) in rows:
            name = str(detail).split("seen ", 1)[1].split(" (", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
        self.sql.dispose()


@pytest.fixture(params=["sqlite", "postgres-New_York", "postgres-Kolkata", "postgres-UTC"])
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crm]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
        create_demo_crm(url, now=datetime.now(UTC) - timedelta(days=3))
    else:
        from tests.pgserver import create_database

        url = create_database(request.getfixturevalue("postgres_admin"))
        zone = {"New_York": "America/New_York", "Kolkata": "Asia/Kolkata", "UTC": "UTC"}[
            request.param.split("-")[1]
        ]
        admin = Database(url)
        admin(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET timezone TO '{zone}'")
        for statement in PG_DEALS.split(";"):
            if statement.strip():
                admin(statement)
        admin.dispose()
        # Every new session, the daemon's included, now reads and writes in that zone.
        assert Database(url)("SHOW timezone")[0][0] == zone
    project = Crm(tmp_path, url)
    yield project
    project.close()


def test_every_skewed_write_is_evaluated_once_by_the_next_poll(crm: Crm) -> None:
    daemon = crm.start()
    for number, (name, stamp) in enumerate(CASES, start=1):
        crm.stamp_write(1 + number % 5, name, stamp(datetime.now(UTC)))
        daemon.tick()
        assert crm.evaluations().get(name) == 1, (name, crm.evaluations(), crm.out.getvalue())
    for _ in range(3):  # later polls re-read the window: nothing is evaluated again
        daemon.tick()
    assert crm.evaluations() == {name: 1 for name, _ in CASES}


def test_a_row_stamped_in_the_future_does_not_hide_later_writes(crm: Crm) -> None:
    daemon = crm.start()
    now = datetime.now(UTC)
    crm.stamp_write(1, "a day ahead", now + timedelta(days=1))
    daemon.tick()
    for minute in range(3):
        crm.stamp_write(2, f"normal {minute}", datetime.now(UTC))
        daemon.tick()
        assert crm.evaluations().get(f"normal {minute}") == 1, crm.out.getvalue()
    assert crm.evaluations()["a day ahead"] == 1


@pytest.mark.parametrize("hour", [3, 13, 20], ids=["lower at 03:00", "13:00", "20:00"])
def test_the_text_window_reads_every_form_and_offset_and_little_else(
    tmp_path: Path, hour: int
) -> None:
    """The window's text ranges at hours where the offset band does and does not cross
    midnight: each row whose instant is at or after `lower` comes back, in any form."""
    from crmflow.crm.database import CRM
    from crmflow.daemon.capture import Capture
    from crmflow.rules.entities import builtin_model

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    create_demo_crm(url)
    lower = datetime(2026, 12, 3, hour, 0, tzinfo=UTC)
    stamps = {}
    for minutes in (-20 * 60, -13 * 60, -61, -1, 0, 1, 61, 13 * 60):
        moment = lower + timedelta(minutes=minutes)
        for zone_hours in (-12, -5, 0, 9, 14):
            local = moment.astimezone(offset(zone_hours))
            stamps[f"T{zone_hours:+d}@{minutes}"] = (moment, local.isoformat())
            stamps[f"S{zone_hours:+d}@{minutes}"] = (moment, local.strftime("%Y-%m-%d %H:%M:%S%z"))
        stamps[f"Z@{minutes}"] = (moment, iso_utc(moment))
        stamps[f"plain@{minutes}"] = (moment, moment.strftime("%Y-%m-%d %H:%M:%S"))
    db = Database(url)
    db("DELETE FROM deals")
    for number, (name, (_, text)) in enumerate(sorted(stamps.items()), start=1):
        db("INSERT INTO deals (id, name, updated_at) VALUES (?, ?, ?)", number, name, text)
    db.dispose()
    crm = CRM(url, builtin_model())
    capture = Capture(crm, None, ["deal"], lambda: lower)  # type: ignore[arg-type]
    read = {r["name"] for r in capture._window("deal", lower)}
    crm.dispose()
    due = {name for name, (moment, _) in stamps.items() if moment >= lower}
    assert due <= read, sorted(due - read)
    # What else comes back is bounded: the positive offsets' digits run ahead of time.
    assert len(read - due) <= len(stamps) // 2


SEEN_HOOK = """\
id: seen
entity: deal
trigger: {on: [created, updated]}
actions:
  - webhook: {url: "WEB/seen", body: {name: "{{ deal.name }}"}}
"""


def test_a_real_daemon_evaluates_every_skewed_write_once(crm: Crm) -> None:
    """The same writes through a `crmflow run` process, counted on a real HTTP server."""
    from collections import Counter

    from tests.daemonproc import DaemonProcess, wait_until
    from tests.servers import Web

    with Web() as web:
        write_rules(crm.folder / "rules", {"seen.yaml": SEEN_HOOK.replace("WEB", web.base)})
        config = crm.folder / "crmflow.yaml"
        config.write_text(
            config.read_text().replace("poll_interval: 1s", "poll_interval: 300ms")
            + f'webhooks: {{allow: ["{web.base}/*"]}}\n',
            encoding="utf-8",
        )
        daemon = DaemonProcess(crm.folder)
        daemon.start()

        def seen() -> Counter[str]:
            return Counter(str(body["name"]) for body in web.json_bodies("/seen"))

        for number, (name, stamp) in enumerate(CASES, start=1):
            crm.stamp_write(1 + number % 5, name, stamp(datetime.now(UTC)))
            wait_until(lambda name=name: seen()[name] >= 1, timeout=20)  # type: ignore[misc]
        time.sleep(1.5)  # several more polls: a repeat would show
        assert seen() == Counter(name for name, _ in CASES), daemon.log()
        assert daemon.stop() == 0
