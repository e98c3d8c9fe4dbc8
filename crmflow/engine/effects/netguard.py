"""Which webhook targets may be called, and at which address.

A URL is matched against `webhooks.allow` as parsed parts (scheme, host, port, path),
never as a raw string. Its host is resolved once and the connection goes only to the
addresses that were checked (no second lookup an attacker's DNS could answer
differently); every one of them is checked, so the caller may try them in turn. A host
written literally in a pattern may be private (an on-premises ERP); a wildcard never
admits private, loopback, link-local or otherwise non-public addresses.

A lookup that fails is `Unresolved`: temporary (EAI_AGAIN, the resolver could not be
asked: worth retrying) or final (the name does not exist).

A proxy (`webhooks.proxy`) changes none of this: the target is checked here all the same,
before the proxy hears of it, so the proxy cannot carry a request this check refuses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlunsplit

from crmflow.urls import Refused, allowed, parse_pattern

Resolve = Callable[[str, int], list[str]]


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
class Target:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # the checked IP addresses, in the resolver's order


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
        parts, host, port, pattern = allowed(url, self.patterns)
        scheme = parts.scheme.lower()
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
        checked = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
