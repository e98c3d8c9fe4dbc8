"""Webhook URLs against `webhooks.allow`, as parsed parts: what lint and the engine share.

A URL is matched on its scheme, host, port and the path as a server resolves it (dot
segments applied, `%2e` decoded, empty segments dropped), never as a raw string;
spellings servers read differently (a backslash, `;` parameters, an encoded slash or NUL)
are refused. No name is resolved here: the engine's netguard resolves and checks the
addresses; lint judges literal URLs with this alone. The proxy URL (`webhooks.proxy`) is
checked and masked for messages here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(ValueError):
    """A target crmflow will not call; the message says why."""


@dataclass(frozen=True)
class Pattern:
    text: str
    scheme: str
    host: str
    port: int | None  # None: any port
    path: str

    @property
    def wildcard(self) -> bool:
        return "*" in self.host or "?" in self.host

    def matches(self, scheme: str, host: str, port: int, path: str) -> bool:
        return (
            scheme == self.scheme
            and (self.port is None or port == self.port)
            and fnmatchcase(host, self.host)
            and fnmatchcase(path, self.path)
        )


def parse_pattern(text: str) -> Pattern:
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise ValueError(f"webhooks.allow: {text!r} is not an http(s) URL pattern")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host, port = netloc.lower(), DEFAULT_PORTS[scheme]
    port_any = False
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif ":" in netloc:
        host, _, port_text = netloc.rpartition(":")
        if port_text == "*":
            port_any = True
        else:
            port = int(port_text)
    return Pattern(text, scheme, host.lower(), None if port_any else port, parts.path or "/*")


def allowed(url: str, patterns: Iterable[Pattern]) -> tuple[SplitResult, str, int, Pattern]:
    """The URL's parts (its path normalised), host, port and the pattern admitting it.

    Refused with the reason when no pattern does, or the URL is not one to call.
    """
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused(f"{url!r}: only http and https URLs can be called")
    if parts.username is not None or parts.password is not None:
        raise Refused(f"{url!r}: credentials in the URL are not allowed; use headers")
    host = (parts.hostname or "").lower()
    if not host:
        raise Refused(f"{url!r}: no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise Refused(f"{url!r}: invalid port") from None
    path = normal_path(url, parts.path or "/")
    pattern = next((p for p in patterns if p.matches(scheme, host, port, path)), None)
    if pattern is None:
        raise Refused(f"{scheme}://{host}:{port}{path} is not in webhooks.allow")
    return parts._replace(path=path), host, port, pattern


# Percent-escapes a server may decode into a path separator, a parameter or a NUL: a path
# holding one means something else to the server than to the allow list.
_AMBIGUOUS = re.compile(r"%(2f|5c|3b|00)", re.IGNORECASE)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normal_path(url: str, path: str) -> str:
    """The path as a server resolves it: `.` and `..` segments applied, empty segments
    dropped, escapes of unreserved characters (`%2e`) decoded. Spellings that servers
    read differently (a backslash, `;` parameters, an encoded slash or NUL) are refused:
    what the allow list admits must be what the server serves."""
    if "\\" in path or ";" in path or _AMBIGUOUS.search(path):
        raise Refused(f"{url!r}: the path holds a backslash, ';' or an encoded separator")
    decoded = _ESCAPE.sub(
        lambda m: chr(int(m.group(1), 16)) if chr(int(m.group(1), 16)) in _UNRESERVED else m[0],
        path,
    )
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise Refused(f"{url!r}: the path climbs above the root")
            segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if decoded.endswith(("/", "/.", "/..")) and segments else ""
    return "/" + "/".join(segments) + trailing


def _split(url: str) -> SplitResult:
    if any(c in url for c in "\r\n\t "):
        raise Refused(f"{url!r}: whitespace in the URL")
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise Refused(f"{url!r}: {exc}") from None


# -- the proxy ----------------------------------------------------------------------------
# `webhooks.proxy` may carry a user and password (from the environment), so every message
# about it shows the URL masked.


def masked(url: str) -> str:
    """`url` with all before its last `@` (a user and password) replaced by `***`.

    Works on text that does not parse as a URL too: an invalid proxy is reported masked.
    A password with an unencoded `/` or `@` is masked whole all the same.
    """
    scheme, sep, rest = url.rpartition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def proxy_url(text: str) -> str:
    """`text` when it is an http(s) proxy URL (`http://user:password@host:port`), else
    ValueError with the reason; the message never holds the credentials."""
    shown = masked(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown} is not a proxy URL (invalid port or address)") from None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"{shown} is not a proxy URL: expected http://HOST:PORT (or https://), with "
            "USER:PASSWORD@ before the host when the proxy asks for a login"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
        raise ValueError(f"{shown} is not a proxy URL: only a scheme, a host and a port")
    if any(c in text for c in "\r\n\t "):
        raise ValueError(f"{shown} is not a proxy URL: whitespace in it")
    return text
