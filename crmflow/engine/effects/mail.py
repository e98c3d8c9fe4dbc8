"""E-mail: building messages safely and handing them to a maildir or an SMTP server."""

from __future__ import annotations

import mailbox
import os
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crmflow.errors import ActionError, ConfigError

if TYPE_CHECKING:
    from crmflow.config import EmailSettings

_ADDRESS_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


class MailError(ActionError):
    """Sending failed; `transient` failures are worth retrying."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def check_header(name: str, value: str) -> str:
    """A header value, or MailError: CR/LF would let data add headers (Bcc injection)."""
    if "\r" in value or "\n" in value:
        raise MailError(
            f"refused: line break in the {name} header (header injection)", transient=False
        )
    return value


def addresses(value: Any, field: str) -> list[str]:
    """E-mail addresses from a string or a list of them; MailError if any is invalid.

    Each item is exactly one address (a display name allowed): items are often rendered
    from CRM data, where `x@example.com, victim@evil.example` or group syntax would add
    recipients nobody wrote. Several recipients are a list.
    """
    items = value if isinstance(value, list) else ([] if value in (None, "") else [value])
    found: list[str] = []
    for item in items:
        text = check_header(field, str(item))
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise MailError(f"{field}: {text!r} holds control characters", transient=False)
        if _separators_outside_quotes(text):
            raise MailError(
                f"{field}: {text!r} is not one address (',', ';' or ':' outside quotes): "
                "list several recipients instead",
                transient=False,
            )
        parsed = [address for _name, address in getaddresses([text]) if address]
        if not parsed:
            continue
        if len(parsed) != 1 or not _ADDRESS_RE.match(parsed[0]):
            raise MailError(f"{field}: {text!r} is not an e-mail address", transient=False)
        found.append(parsed[0])
    return found


def _separators_outside_quotes(text: str) -> bool:
    """Whether `text` separates addresses (`,`) or opens a group (`:` ... `;`)."""
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in ",;:":
            return True
    return False


@dataclass(frozen=True)
class Attachment:
    name: str
    content: str
    content_type: str


@dataclass
class Mail:
    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    body: str
    html: str | None
    key: str
    reply_to: str | None = None
    original_to: list[str] | None = None
    attached: list[Attachment] = field(default_factory=list)

    def message(self, domain: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = check_header("From", self.sender)
        msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        if self.reply_to:
            msg["Reply-To"] = check_header("Reply-To", self.reply_to)
        msg["Subject"] = check_header("Subject", self.subject)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        # Derived from the idempotency key: a repeat of the same action is the same message.
        msg["Message-ID"] = f"<{self.key}@{domain}>"
        if self.original_to:
            msg["X-Crmflow-Original-To"] = ", ".join(self.original_to)
        msg.set_content(self.body or "")
        if self.html is not None:
            msg.add_alternative(self.html, subtype="html")
        for item in self.attached:
            maintype, _, subtype = item.content_type.partition("/")
            msg.add_attachment(
                item.content.encode(),
                maintype=maintype or "text",
                subtype=subtype or "plain",
                filename=item.name,
            )
        return msg

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to + self.cc + self.bcc))


class Maildir:
    """Every e-mail becomes a file in a maildir folder (new/): the demo default."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, mail: Mail, domain: str) -> str:
        message = mail.message(domain)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            name = mailbox.Maildir(str(self.path), create=False).add(message)
        except OSError as exc:
            raise MailError(f"maildir {self.path}: {exc.strerror}", transient=False) from None
        return f"written to {self.path / 'new' / name}"


class Smtp:
    """An SMTP server, with STARTTLS or implicit TLS and login; password from the environment."""

    def __init__(self, settings: EmailSettings) -> None:
        if not settings.host:
            raise ConfigError("email.host: the smtp transport needs a host")
        self.host = settings.host
        self.port = settings.smtp_port
        self.username = settings.username
        self.password_env = settings.password_env
        self.starttls = settings.starttls
        self.ssl = settings.ssl
        self.ca_file = settings.ca_file
        self.timeout = settings.timeout.seconds

    def _password(self) -> str | None:
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise MailError(
                f"email.password_env: environment variable {self.password_env} is not set",
                transient=False,
            )
        return value

    def _tls(self) -> ssl.SSLContext:
        # Certificates are verified (smtplib's own default does not); ca_file adds a CA.
        return ssl.create_default_context(cafile=self.ca_file)

    def send(self, mail: Mail, domain: str) -> str:
        password = self._password()
        message = mail.message(domain)
        try:
            if self.ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.starttls:
                    client.starttls(context=self._tls())
                if self.username:
                    client.login(self.username, password or "")
                refused = client.send_message(message, to_addrs=mail.recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise MailError(
                f"SMTP refused every recipient: {_codes(exc.recipients)}",
                transient=all(400 <= c < 500 for c in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise MailError(
                f"SMTP {exc.smtp_code}: {text}", transient=400 <= exc.smtp_code < 500
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP {self.host}:{self.port}: {exc}", transient=True) from None
        if refused:
            return f"sent via {self.host}:{self.port}; refused: {_codes(refused)}"
        return f"sent via {self.host}:{self.port}"


def _codes(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{address} ({code})" for address, (code, _) in refused.items())


def transport(settings: EmailSettings, base: Path) -> Maildir | Smtp:
    """Where e-mail goes, as `email:` in crmflow.yaml says."""
    if settings.transport == "smtp":
        return Smtp(settings)
    if settings.transport != "maildir":
        raise ConfigError(f"email.transport: unknown transport {settings.transport!r}")
    return Maildir(base / settings.path)
