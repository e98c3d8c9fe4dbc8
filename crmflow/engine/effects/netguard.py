"""Which webhook targets may be called, and at which address.

A URL is matched against `webhooks.allow` as parsed parts (scheme, host, port, path),
never as a raw string. Its host is resolved once and the connection goes only to the
addresses that were checked (no second lookup an attacker's DNS could answer
differently); every one of them is checked, so the caller may try them in turn. A host
written literally in a pattern may be private (an on-premises ERP); a wildcard never
admits private, loopback, link-local or otherwise non-public addresses.

A lookup that fails is `Unresolved`: temporary (EAI_AGAIN, the resolver could not be
asked: worth retrying) or final (the name does not exist).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
Resolve = Callable[[str, int], list[str]]


class Refused(Exception):
    """A target crmflow will not call; the message says why."""


class Unresolved(Exception):
    """The host name gave no address: for now (`temporary`) or for good."""

    def __init__(self, host: str, reason: str, *, temporary: bool) -> None:
        super().__init__(f"cannot resolve {host}: {reason}")
        self.host = host
        self.temporary = temporary


# getaddrinfo answers that may pass: the resolver timed out or was unreachable
# (EAI_AGAIN) or ran short of memory. Every other gaierror is an answer about the name
# itself (EAI_NONAME: no such host, EAI_NODATA: no address), which a retry cannot change.
_TEMPORARY_GAI = frozenset({socket.EAI_AGAIN, socket.EAI_MEMORY})


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


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # the checked IP addresses, in the resolver's order


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


def default_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


class UrlPolicy:
    def __init__(self, allow: Iterable[str], resolve: Resolve = default_resolve) -> None:
        self.patterns = [parse_pattern(p) for p in allow]
        self.resolve = resolve

    def check(self, url: str) -> Target:
        """The address to call for `url`, or Refused with the reason."""
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
        pattern = next((p for p in self.patterns if p.matches(scheme, host, port, path)), None)
        if pattern is None:
            raise Refused(f"{scheme}://{host}:{port}{path} is not in webhooks.allow")
        addresses = [host] if _is_ip(host) else self._lookup(host, port)
        if not addresses:
            raise Refused(f"{host}: no address")
        # A name in place of an address would be looked up again when connecting, by a
        # resolver nobody checked: only IP literals leave here.
        if not all(_is_ip(a) for a in addresses):
            raise Refused(f"{host}: the resolver answered something that is not an address")
        if pattern.wildcard:
            private = [a for a in addresses if not is_public(a)]
            if private:
                raise Refused(
                    f"{host} resolves to the non-public address {private[0]}; only a "
                    "host named literally in webhooks.allow may be private"
                )
        # The request goes to the path that was checked, not to its unnormalised spelling.
        checked = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        return Target(checked, scheme, host, port, tuple(dict.fromkeys(addresses)))

    def _lookup(self, host: str, port: int) -> list[str]:
        try:
            return self.resolve(host, port)
        except socket.gaierror as exc:
            reason = exc.strerror or str(exc)
            raise Unresolved(host, reason, temporary=exc.errno in _TEMPORARY_GAI) from None
        except UnicodeError:
            # The IDNA codec rejects the name (an empty or over-long label) before any
            # DNS query: the URL is at fault, not the network.
            raise Refused(f"{host!r}: not a valid host name") from None
        except OSError as exc:
            # Not an answer about the name (Python turns EAI_SYSTEM into a plain OSError;
            # a resolver of one's own may time out): worth another try.
            raise Unresolved(host, exc.strerror or str(exc), temporary=True) from None


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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
