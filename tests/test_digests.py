"""Digests (`digest:` on notify and email): a workflow's messages collected per
recipient and sent once, listing all, at the digest's time; kept in the state database
across a restart. A real daemon on real SQLite files sends through a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import itertools
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from crmflow.crm.database import iso_utc
from tests.conftest import crmflow_bin
from tests.daemonkit import START, Rig, make_rig
from tests.servers import MailHandler, smtp_server

# Weekdays at 07:00 in Berlin, every open deal without activity for 14 days: one item each
# for the recipients' digest at 08:00.
QUIET = """
    id: quiet-deals
    name: Deals gone quiet
    entity: deal
    trigger: {{schedule: "0 7 * * 1-5"}}
    conditions:
      - stage: {{not_in: [won, lost]}}
      - last_activity_at: {{before: -14d}}
    actions:
      - notify:
          to: {to}
          via: [email]
          subject: "{{{{ deal.name }}}} has gone quiet"
          body: "Stage {{{{ deal.stage }}}}, last activity {{{{ deal.last_activity_at | date }}}}."
        digest: {{every: 1d, at: "08:00"}}
    """


@pytest.fixture
def mail() -> Iterator[tuple[MailHandler, int]]:
    handler = MailHandler()
    with smtp_server(handler) as port:
        yield handler, port


def quiet_rig(tmp_path: Path, port: int, to: str) -> Rig:
    rig = make_rig(tmp_path)
    rig.rules({"quiet.yaml": QUIET.format(to=to)})
    config = tmp_path / "crmflow.yaml"
    config.write_text(
        config.read_text().replace(
            "email: {transport: maildir, path: mail/}",
            f"email: {{transport: smtp, host: 127.0.0.1, port: {port}, from: crm@example.com}}",
        )
    )
    # Every deal of the demo was active yesterday; twelve more went quiet a month ago.
    recent, old = iso_utc(START - timedelta(days=1)), iso_utc(START - timedelta(days=30))
    rig.write(f"UPDATE deals SET last_activity_at = '{recent}'")
    for number in range(1, 13):
        rig.write(
            "INSERT INTO deals (name, stage, owner_id, last_activity_at, created_at, updated_at)"
            f" VALUES ('Quiet {number:02}', 'proposal', 1, '{old}', '{old}', '{old}')"
        )
    rig.start()
    return rig


def read(handler: MailHandler) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(m.original_content or b"", policy=email.policy.default)  # type: ignore[misc]
        for m in handler.messages
    ]


def test_twelve_quiet_deals_make_one_email_listing_twelve_across_a_restart(
    tmp_path: Path, mail: tuple[MailHandler, int]
) -> None:
    handler, port = mail
    rig = quiet_rig(tmp_path, port, "[3]")
    try:
        rig.tick(hours=21)  # Tuesday 07:00 in Berlin: the schedule collects twelve items
        assert handler.messages == []
        collected = rig.state("SELECT count(*) FROM crmflow_digest_items")
        assert collected == [(12,)]
        assert rig.state(
            "SELECT action_type, status, count(*) FROM crmflow_pending "
            "WHERE action_type = 'digest' GROUP BY action_type, status"
        ) == [("digest", "pending", 1)]
        rig.start()  # a new daemon: what was collected is in the state database
        rig.tick(minutes=59)
        assert handler.messages == []  # 07:59
        rig.tick(minutes=2)  # 08:01: the digest goes out
        rig.tick(minutes=1)
        messages = read(handler)
        assert len(messages) == 1
        message = messages[0]
        assert message["To"] == "priya.shah@demo-crm.example"
        assert message["Subject"] == "Deals gone quiet (12 items)"
        body = message.get_content().replace("\r\n", "\n")
        listed = re.findall(r"^(\d+)\. (Quiet \d\d) has gone quiet$", body, re.M)
        assert [int(n) for n, _ in listed] == list(range(1, 13))
        assert sorted(name for _, name in listed) == [f"Quiet {n:02}" for n in range(1, 13)]
        assert body.startswith("12 items, collected at 2026-11-24 07:00 (Europe/Berlin):\n\n")
        assert body.count("Stage proposal, last activity 2026-10-24.") == 12
        # Sent once: a later tick, and a restart, send nothing again.
        rig.start()
        rig.tick(hours=1)
        assert len(handler.messages) == 1
        history = [(o, d) for o, d in rig.history("quiet-deals") if o == "done"]
        assert sum(d.startswith("collected for the digest of") for _, d in history) == 12
        assert [d for _, d in history if d.startswith("e-mail to")] == [
            d for _, d in history if "priya.shah@demo-crm.example" in d and "e-mail" in d
        ]
    finally:
        rig.close()


def test_each_recipient_gets_a_digest_of_their_own(
    tmp_path: Path, mail: tuple[MailHandler, int]
) -> None:
    handler, port = mail
    rig = quiet_rig(tmp_path, port, '["role:management"]')  # Priya and Marco
    try:
        rig.tick(hours=21)
        rig.tick(hours=1, minutes=1)
        rig.tick(minutes=1)
        messages = read(handler)
        assert sorted(m["To"] for m in messages) == [
            "marco.rossi@demo-crm.example",
            "priya.shah@demo-crm.example",
        ]
        for message in messages:
            assert message["Subject"] == "Deals gone quiet (12 items)"
    finally:
        rig.close()


def test_a_digest_waits_for_its_hour_and_the_next_day_starts_a_new_one(
    tmp_path: Path, mail: tuple[MailHandler, int]
) -> None:
    handler, port = mail
    rig = quiet_rig(tmp_path, port, "[3]")
    try:
        rig.tick(hours=21)
        rig.tick(hours=1, minutes=1)
        rig.tick(minutes=1)
        assert len(handler.messages) == 1
        # Wednesday: the twelve are still quiet, and a new digest lists them again.
        rig.tick(hours=22, minutes=58)
        rig.tick(hours=1, minutes=1)
        rig.tick(minutes=1)
        assert len(handler.messages) == 2
        sendings = rig.state(
            "SELECT due_at FROM crmflow_pending WHERE action_type = 'digest' ORDER BY due_at"
        )
        assert [b - a for (a,), (b,) in itertools.pairwise(sendings)] == [86400.0]
    finally:
        rig.close()


@pytest.mark.parametrize(
    ("action", "digest", "expected"),
    [
        (
            'webhook: {url: "https://hooks.example.com/x"}',
            "{every: 1d}",
            "CF229 d: digest applies to notify and email, not to webhook",
        ),
        (
            "notify: {to: [3], subject: s, body: b}",
            "{every: 2bd}",
            "CF229 d: every: 2bd counts months or working time",
        ),
        (
            "notify: {to: [3], subject: s, body: b}",
            "{every: 30s}",
            "CF229 d: every: 30s is under a minute",
        ),
        (
            "email: {to: a@example.com, subject: s, body: b}",
            '{every: 1d, at: "25:00"}',
            "CF229 d: at: '25:00' is no time of day",
        ),
        (
            "notify: {to: [3], subject: s, body: b}",
            "{every: 100000000w}",
            "CF229 d: every: 100000000w is over a year",
        ),
        (
            "notify: {to: [3], subject: s, body: b}",
            "{every: 24h}",
            "CF229 d: every: 24h is a day or more; say it in days (1d) or weeks (1w)",
        ),
        (
            "notify: {to: [3], subject: s, body: b}",
            '{every: 1d, subject: "Week of {{ deal.name }}"}',
            "CF229 d: subject: a digest's subject is plain text",
        ),
    ],
)
def test_lint_refuses_a_digest_it_cannot_keep(
    tmp_path: Path, action: str, digest: str, expected: str
) -> None:
    (tmp_path / "d.yaml").write_text(
        "id: d\nentity: deal\ntrigger: {on: updated}\n"
        f"actions:\n  - {action}\n    digest: {digest}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [crmflow_bin(), "lint", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stdout


def test_what_was_collected_goes_even_when_the_digest_was_taken_out_since(
    tmp_path: Path, mail: tuple[MailHandler, int]
) -> None:
    handler, port = mail
    rig = quiet_rig(tmp_path, port, "[3]")
    try:
        rig.tick(hours=21)  # twelve collected for 08:00
        # The workflow loses its digest: from now on each message goes on its own ...
        undigested = QUIET.format(to="[3]").replace('    digest: {every: 1d, at: "08:00"}\n', "")
        assert "digest" not in undigested
        rig.rules({"quiet.yaml": undigested})
        rig.start()
        rig.tick(hours=1, minutes=1)
        rig.tick(minutes=1)
        # ... and the twelve it collected before still go, together, at their time.
        messages = read(handler)
        assert [m["Subject"] for m in messages] == ["Deals gone quiet (12 items)"]
    finally:
        rig.close()
