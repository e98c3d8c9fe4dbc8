"""Real servers on 127.0.0.1 for tests: SMTP (aiosmtpd) and HTTP."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MailHandler:
    """Collects messages; can answer 4xx a number of times first, or always 5xx."""

    temporary_failures: int = 0
    permanent_failure: bool = False
    messages: list[Envelope] = field(default_factory=list)
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.permanent_failure:
            return "554 5.7.1 Message rejected"
        if self.temporary_failures > 0:
            self.temporary_failures -= 1
            return "451 4.3.0 Try again later"
        self.messages.append(envelope)
        return "250 OK"


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def smtp_server(
    handler: MailHandler,
    *,
    login: tuple[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[int]:
    kwargs: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        kwargs.update(tls_context=context, require_starttls=True)
    if login is not None:
        user, password = login

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticate, auth_required=True, auth_require_tls=tls is not None
        )
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes


class Web:
    """An HTTP server with scripted answers per path; records every request."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.hang = 0.0
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The sender died mid-request (a daemon killed while sending): no
                    # receiver acts on half a request, and none is counted here.
                    return
                web.hits.append(Hit(self.path, self.command, dict(self.headers), body))
                if self.path.startswith("/hang"):
                    time.sleep(web.hang)
                answers = web.script.get(self.path.split("?")[0]) or [(200, {}, b"{}")]
                status, headers, payload = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def json_bodies(self, path: str) -> list[Any]:
        return [json.loads(h.body) for h in self.hits if h.path == path]

    def __enter__(self) -> Web:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
