"""E-mail through a real SMTP server on 127.0.0.1 (aiosmtpd) and a maildir."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.crmkit import Project, actions, make_project
from tests.servers import MailHandler, self_signed, smtp_server

WELCOME = """
id: welcome
entity: contact
trigger: {on: created}
actions:
  - email:
      to: "{{ contact.email }}"
      cc: ["office@demo.example"]
      subject: "Welcome, {{ contact.name }}"
      body: "Hello {{ contact.first_name }}"
      html: "<p>Hello <b>{{ contact.first_name }}</b></p>"
"""


def contact(
    name: str = "Ada Lovelace",
    first: str = "Ada",
    address: str = "ada@example.org",
    **extra: object,
) -> dict[str, object]:
    return {
        "entity": "contact",
        "event": "created",
        "record": {"id": 99, "name": name, "first_name": first, "email": address, **extra},
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = make_project(tmp_path)
    p.rules({"w.yaml": WELCOME})
    return p


def smtp_config(port: int, extra: str = "") -> str:
    return (
        f"email: {{transport: smtp, host: 127.0.0.1, port: {port}, timeout: 5s, "
        f"from: crm@demo.example{extra}}}\n"
    )


def test_smtp_delivery_with_message_id_from_the_key(project: Project) -> None:
    handler = MailHandler()
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, _plans, err = project.eval(contact())
    assert code == 0, err
    (env,) = handler.messages
    assert sorted(env.rcpt_tos) == ["ada@example.org", "office@demo.example"]
    msg = email.message_from_bytes(env.content, policy=email.policy.default)
    assert msg["Subject"] == "Welcome, Ada Lovelace"
    key = project.state_sql("SELECT key FROM crmflow_history WHERE outcome = 'done'")[0][0]
    assert msg["Message-ID"] == f"<{key}@demo.example>"
    assert msg.get_body(("plain",)).get_content().strip() == "Hello Ada"


def test_html_bodies_escape_crm_data(project: Project) -> None:
    project.configure()
    project.eval(contact(first="<script>alert(1)</script>"))
    (mail,) = project.mails()
    msg = email.message_from_string(mail, policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<b>" in html  # the template's own markup stays


def test_smtp_starttls_and_login_with_password_from_env(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    handler = MailHandler()
    with smtp_server(handler, login=("crm", "s3cret"), tls=(cert, key)) as port:
        project.configure(
            smtp_config(
                port,
                f", starttls: true, username: crm, password_env: SMTP_PASSWORD, ca_file: {cert}",
            )
        )
        code, plans, err = project.eval(contact())
        assert code == 0, (err, plans)
        assert len(handler.messages) == 1
        monkeypatch.setenv("SMTP_PASSWORD", "wrong")
        code, plans, _ = project.eval(contact(address="bob@example.org"))
    assert code == 3
    assert "SMTP 535" in actions(plans[0], "welcome")[0]["result"]


def test_smtp_4xx_is_retried_and_then_accepted(project: Project) -> None:
    handler = MailHandler(temporary_failures=2)
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, _plans, err = project.eval(contact())
    assert code == 0, err
    assert handler.attempts == 3 and len(handler.messages) == 1
    assert len(project.sleeps) == 2 and project.sleeps[1] > project.sleeps[0] * 0.9
    retried = project.state_sql("SELECT detail FROM crmflow_history WHERE outcome = 'retried'")
    assert len(retried) == 2 and "451" in retried[0][0]


def test_smtp_5xx_fails_without_retry(project: Project) -> None:
    handler = MailHandler(permanent_failure=True)
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, plans, _ = project.eval(contact())
    assert code == 3
    assert handler.attempts == 1
    assert actions(plans[0], "welcome")[0]["result"] == "SMTP 554: 5.7.1 Message rejected"
    assert project.state_sql("SELECT outcome FROM crmflow_history WHERE action_type = 'email'") == [
        ("failed",)
    ]


def test_header_injection_from_crm_data_is_refused(project: Project) -> None:
    handler = MailHandler()
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, plans, _ = project.eval(contact(name="Ada\r\nBcc: victim@evil.example"))
    assert code == 3
    assert "header injection" in actions(plans[0], "welcome")[0]["result"]
    assert handler.messages == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("ada@example.org, victim@evil.example", "is not one address"),
        ("ada@example.org; victim@evil.example", "is not one address"),
        ("friends: ada@example.org, victim@evil.example;", "is not one address"),
        ("ada@example.org\x00victim@evil.example", "control characters"),
        ("ada@example.org\nvictim@evil.example", "line break"),
        ('"x" <ada@example.org>, victim@evil.example', "is not one address"),
    ],
)
def test_a_recipient_from_crm_data_is_exactly_one_address(
    project: Project, address: str, reason: str
) -> None:
    handler = MailHandler()
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, plans, _ = project.eval(contact(address=address))
    assert code == 3
    assert reason in actions(plans[0], "welcome")[0]["result"]
    assert handler.messages == []


def test_a_display_name_with_a_comma_is_still_one_address(project: Project) -> None:
    handler = MailHandler()
    with smtp_server(handler) as port:
        project.configure(smtp_config(port))
        code, _plans, err = project.eval(contact(address='"Lovelace, Ada" <ada@example.org>'))
    assert code == 0, err
    (env,) = handler.messages
    assert sorted(env.rcpt_tos) == ["ada@example.org", "office@demo.example"]


def test_contacts_who_opted_out_are_not_written_to(project: Project) -> None:
    project.configure()
    opted = project.sql("SELECT email FROM contacts WHERE email_opt_out = 1")[0][0]
    code, plans, _ = project.eval(contact(address=opted.upper()))
    (action,) = actions(plans[0], "welcome")
    assert action["status"] == "done"
    assert "opted out" in action["result"]
    (mail,) = project.mails()
    assert opted not in mail.lower().split("to:")[1].split("\n")[0]
    project.rules({"w.yaml": WELCOME.replace('cc: ["office@demo.example"]', "")})
    _code, plans, _ = project.eval(contact(address=opted, name="Again"))
    assert actions(plans[0], "welcome")[0]["status"] == "skipped"


def test_redirect_to_sends_everything_to_one_address(project: Project) -> None:
    project.configure(
        "email: {transport: maildir, path: mail/, from: crm@demo.example, "
        "redirect_to: staging@demo.example}\n"
    )
    project.eval(contact())
    (mail,) = project.mails()
    assert "To: staging@demo.example" in mail
    assert "X-Crmflow-Original-To: ada@example.org, office@demo.example" in mail
    assert "Cc:" not in mail


def test_template_payloads_in_crm_data_stay_text(project: Project) -> None:
    project.configure()
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }} {{ 7*7 }}"
    code, _plans, _ = project.eval(contact(name=payload))
    assert code == 0
    (mail,) = project.mails()
    assert "{{ 7*7 }}" in mail and "49" not in mail.split("Subject:")[1].split("\n")[0]
