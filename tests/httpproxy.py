"""A small forward HTTP proxy on 127.0.0.1 for tests: absolute-form requests and CONNECT.

It forwards an absolute-form request (`POST http://host:port/path HTTP/1.1`) to its
target and relays the answer, and for `CONNECT host:port` opens a tunnel and copies bytes
both ways, so TLS runs between the client and the target. Every request it receives is
recorded before anything else happens, so a test can tell whether it was reached at all.
With `login` set, a request without the matching Proxy-Authorization gets 407.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Headers for one connection only (RFC 9110, 7.6.1): a proxy does not pass them on.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass(frozen=True)
class Seen:
    method: str
    target: str  # the absolute URL, or host:port for CONNECT
    headers: dict[str, str]


class Proxy:
    """A threading forward proxy; `seen` lists every request that reached it."""

    def __init__(self, login: tuple[str, str] | None = None, port: int = 0) -> None:
        self.seen: list[Seen] = []
        self.login = login
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _admitted(self) -> bool:
                proxy.seen.append(Seen(self.command, self.path, dict(self.headers)))
                if proxy.login is None:
                    return True
                token = base64.b64encode(":".join(proxy.login).encode()).decode()
                if self.headers.get("Proxy-Authorization") == f"Basic {token}":
                    return True
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_CONNECT(self) -> None:
                if not self._admitted():
                    return
                host, _, port = self.path.rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), 5)
                except OSError:
                    self.send_error(502)
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _pipe(self.connection, upstream)
                self.close_connection = True

            def _forward(self) -> None:
                if not self._admitted():
                    return
                url = urlsplit(self.path)
                if url.scheme != "http" or not url.hostname:
                    self.send_error(400, "absolute-form http URL expected")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5)
                try:
                    path = url.path + (f"?{url.query}" if url.query else "")
                    upstream.request(self.command, path or "/", body, headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                except OSError:
                    self.send_error(502)
                    return
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        # A short poll: shutdown() waits for it, at every test's end.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copies bytes both ways until either side closes."""
    sockets = [client, upstream]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 10)
            if broken or not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)
    except OSError:
        return
    finally:
        upstream.close()
