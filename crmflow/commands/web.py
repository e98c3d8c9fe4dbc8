"""`crmflow run --http`: metrics, health and a read-only web view on one listener.

- `/metrics`: Prometheus text format (crmflow.daemon.metrics).
- `/healthz`: 200 while ticks (and, leading, polls) are recent, else 503; `/readyz`: 200
  once the first tick is done. Both answer without a token: they tell nothing of the CRM.
- `/` pending actions, `/history` recent decisions with filters, `/records/ENTITY/ID`
  every workflow's last decision for one record with its reason, its pending actions and
  what was done: for the people who own the workflows and are not at the server.

Pages are rendered on the server with Jinja2 (autoescaped: CRM data is shown, never
interpreted), without JavaScript. The listener binds to a loopback address unless a
token is given; with a token every page but the health checks asks for
`Authorization: Bearer TOKEN`. Nothing here writes.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from crmflow.commands.control import history_rows, pending_rows, status
from crmflow.daemon.metrics import Health, Metrics
from crmflow.errors import ConfigError
from crmflow.state.store import State

OUTCOMES = (
    "fired",
    "not_fired",
    "scheduled",
    "done",
    "failed",
    "retried",
    "skipped",
    "cancelled",
    "found_late",
    "loop_stopped",
    "shadow",
)
_COOKIE = "crmflow_token"
# What the record page lists under "Done": what happened to the record, not decisions.
_DONE = ("done", "failed", "skipped", "cancelled", "retried", "shadow")


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[::1]:PORT`, or a bare port for 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http {text!r}: write HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("crmflow.data", "web"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


class WebView:
    """The listener's pages and checks, apart from HTTP (tests call `handle` too)."""

    def __init__(
        self,
        state: State,
        metrics: Metrics,
        health: Health,
        workflows: Callable[[str], list[str]],
        clock: Callable[[], datetime],
        token: str | None = None,
        entities: Callable[[], list[str]] | None = None,
    ) -> None:
        self.entities = entities
        self.state = state
        self.metrics = metrics
        self.health = health
        self.workflows = workflows
        self.clock = clock
        self.token = token

    def handle(
        self,
        path: str,
        query: dict[str, str],
        authorization: str | None,
        cookie: str | None = None,
    ) -> Reply:
        if path == "/healthz":
            problems = self.health.problems()
            text = "; ".join(problems) if problems else "ok"
            return Reply(
                503 if problems else 200, "text/plain; charset=utf-8", f"{text}\n".encode()
            )
        if path == "/readyz":
            ready = self.health.ready()
            body = b"ready\n" if ready else b"starting\n"
            return Reply(200 if ready else 503, "text/plain; charset=utf-8", body)
        given = query.pop("token", None)
        if not self._allowed(authorization, cookie, given):
            return Reply(
                401,
                "text/plain; charset=utf-8",
                b"a bearer token is required (Authorization: Bearer TOKEN; in a browser, "
                b"open a page once with ?token=TOKEN)\n",
                (("WWW-Authenticate", 'Bearer realm="crmflow"'),),
            )
        reply = self._route(path, query)
        if given is not None and self.token is not None:
            # A browser cannot send a header: the token given once in the address is
            # kept in a cookie only this listener reads.
            cookie_header = f"{_COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/"
            return Reply(
                reply.status,
                reply.content_type,
                reply.body,
                (*reply.headers, ("Set-Cookie", cookie_header)),
            )
        return reply

    def _route(self, path: str, query: dict[str, str]) -> Reply:
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return Reply(200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
        if path == "/":
            return self._page("pending.html", "Pending actions", self._pending())
        if path == "/history":
            return self._history(query)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "records" and parts[1] and parts[2]:
            return self._record(unquote(parts[1]), unquote(parts[2]))
        return Reply(404, "text/plain; charset=utf-8", b"not found\n")

    def _allowed(self, authorization: str | None, cookie: str | None, given: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, bearer = (authorization or "").partition(" ")
        candidates = [given, bearer.strip() if scheme.lower() == "bearer" else None]
        if cookie:
            jar = SimpleCookie()
            jar.load(cookie)
            if _COOKIE in jar:
                candidates.append(jar[_COOKIE].value)
        return any(
            c is not None and hmac.compare_digest(c.encode(), self.token.encode())
            for c in candidates
        )

    def _page(self, name: str, title: str, context: dict[str, Any], code: int = 200) -> Reply:
        html = _templates().get_template(name).render(title=title, **context)
        return Reply(code, "text/html; charset=utf-8", html.encode())

    def _pending(self) -> dict[str, Any]:
        report = status(self.state, self.clock())
        counts = ", ".join(f"{k} {v}" for k, v in report["pending"].items()) or "none"
        report["pending_text"] = f"actions: {counts}"
        return {"rows": pending_rows(self.state), "status": report}

    def _history(self, query: dict[str, str]) -> Reply:
        outcome = query.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            context = {"rows": [], "query": query, "outcomes": OUTCOMES}
            title = f"History: no outcome {outcome!r} (one of {', '.join(OUTCOMES)})"
            return self._page("history.html", title, context, 400)
        try:
            rows = history_rows(
                self.state,
                workflow=query.get("workflow") or None,
                record=query.get("record") or None,
                since=query.get("since") or None,
                now=self.clock(),
                limit=200,
                outcomes=[outcome] if outcome else None,
            )
        except ConfigError as exc:
            # The command line's wording ("--since: ...") read as the form's field.
            message = exc.message.replace("--", "", 1)
            context = {"rows": [], "query": query, "outcomes": OUTCOMES}
            return self._page("history.html", f"History: {message}", context, 400)
        rows.reverse()  # newest first, as people read a log in a browser
        context = {"rows": rows, "query": query, "outcomes": OUTCOMES}
        return self._page("history.html", "History", context)

    def _record(self, entity: str, record_id: str) -> Reply:
        known = self.entities() if self.entities is not None else None
        if known is not None and entity not in known:
            body = f"no entity {entity!r} (known: {', '.join(known)})\n"
            return Reply(404, "text/plain; charset=utf-8", body.encode())
        rows = history_rows(self.state, record=f"{entity}:{record_id}", everything=True, limit=1000)
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:  # oldest first: the last decision of each workflow wins
            if row["outcome"] in ("fired", "not_fired", "loop_stopped") and row["workflow"]:
                latest[row["workflow"]] = row
        names = list(dict.fromkeys([*self.workflows(entity), *latest]))
        workflows = [
            {
                "id": name,
                "outcome": latest.get(name, {}).get("outcome"),
                "at": latest.get(name, {}).get("at"),
                "detail": latest.get(name, {}).get("detail"),
            }
            for name in names
        ]
        pending = [
            r
            for r in pending_rows(self.state)
            if r["entity"] == entity and str(r["record_id"]) == record_id
        ]
        done = [r for r in reversed(rows) if r["outcome"] in _DONE]
        context = {"workflows": workflows, "pending": pending, "done": done}
        return self._page("record.html", f"{entity} {record_id}", context)


def serve(address: tuple[str, int], view: WebView) -> ThreadingHTTPServer:
    """Start the listener on a thread of its own; `shutdown()` on the result stops it."""
    host, port = address
    if not loopback(host) and view.token is None:
        raise ConfigError(
            f"--http {host}:{port}: only a loopback address serves without a token; "
            "give --http-token (or CRMFLOW_HTTP_TOKEN) to serve on another address"
        )

    class Handler(BaseHTTPRequestHandler):
        server_version = "crmflow"

        def do_GET(self) -> None:  # the name http.server calls
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            try:
                reply = view.handle(
                    parts.path, query, self.headers.get("Authorization"), self.headers.get("Cookie")
                )
            except Exception as exc:  # a page fails, the daemon goes on
                message = f"cannot show this page: {type(exc).__name__}: {exc}\n"
                reply = Reply(500, "text/plain; charset=utf-8", message.encode())
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are not the daemon's news: its log stays one line per event

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ConfigError(f"--http {host}:{port}: cannot listen: {exc.strerror or exc}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="crmflow-http", daemon=True).start()
    return server
