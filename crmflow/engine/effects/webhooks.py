"""The webhook effect: an HTTP call to another system, checked, signed, never redirected.

Signatures follow Standard Webhooks: `webhook-id` (the idempotency key, so a repeat is
recognisable), `webhook-timestamp`, and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">` with the secret from the environment (`whsec_` + base64).

A host with several checked addresses is called at each in turn while connecting fails
(nothing was sent yet); once a request went out, its failure is final for the attempt,
since the other side may have received it.

With `webhooks.proxy` every webhook goes through that proxy: an http target as an
absolute-form request, an https one in a CONNECT tunnel (TLS still checks the target's
certificate for its name, end to end). The target is checked exactly as without a proxy
(allow list, lookup, address checks) before the proxy hears of it. The proxy is trusted:
it is the one address crmflow connects to, and it looks the target's name up itself. Its
URL may hold a password, so messages show it masked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from email.utils import parsedate_to_datetime
from typing import Any

from crmflow import __version__
from crmflow.engine.effects.base import Job, Outcome, Transient
from crmflow.engine.effects.netguard import Refused, Target, Unresolved
from crmflow.errors import ActionError
from crmflow.urls import masked

TRANSIENT_STATUS = {408, 429}
_LOGIN_HINT = "it asks for a login: check the user and password in webhooks.proxy"


def secret_bytes(value: str) -> bytes:
    """The signing key: `whsec_` + base64 decoded, else the text itself."""
    if value.startswith("whsec_"):
        try:
            return base64.b64decode(value[len("whsec_") :], validate=True)
        except ValueError:
            raise ActionError(
                "webhooks.secret_env: the secret after whsec_ is not base64"
            ) from None
    return value.encode()


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _secret(job: Job) -> bytes | None:
    name = job.services.config.webhooks.secret_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        return None  # unsigned, as without a secret; the message says so
    return secret_bytes(value)


def webhook(job: Job) -> Outcome:
    params = job.params
    url = str(params["url"])
    try:
        target = job.services.url_policy.check(url)
    except Refused as exc:
        raise ActionError(f"refused before connecting: {exc}") from None
    except Unresolved as exc:
        if exc.temporary:
            raise Transient(str(exc)) from None
        raise ActionError(f"{exc} (a final DNS answer: not retried)") from None
    method = str(params.get("method") or "POST").upper()
    payload = params.get("body", job.record)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    timestamp = int(job.services.clock().timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"crmflow/{__version__}",
        "webhook-id": job.key,
        "webhook-timestamp": str(timestamp),
    }
    for name, value in (params.get("headers") or {}).items():
        if "\r" in str(value) or "\n" in str(value) or "\r" in name or "\n" in name:
            raise ActionError(f"refused: line break in the {name} header")
        headers[str(name)] = str(value)
    secret = _secret(job)
    if secret is not None:
        headers["webhook-signature"] = sign(secret, job.key, timestamp, body)
    timeout = job.services.config.webhooks.timeout.seconds
    data = body if method != "GET" else None
    proxy = job.services.config.webhooks.proxy
    if proxy:
        response = _send_via_proxy(target, proxy, method, headers, data, timeout)
    else:
        response = _send(target, method, headers, data, timeout)
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(
            "done",
            f"HTTP {status} from {target.host}",
            {"status": status, "body": _response_body(response)},
        )
    if status == 407 and proxy:
        # The proxy's own answer, not the target's: its login is missing or wrong.
        raise ActionError(f"HTTP 407 from the proxy {_proxy_address(proxy)} ({_LOGIN_HINT})")
    if 300 <= status < 400:
        location = response.headers.get("Location", "?")
        raise ActionError(f"HTTP {status}: redirect to {location} not followed")
    if status >= 500 or status in TRANSIENT_STATUS:
        raise Transient(f"HTTP {status} from {target.host}", _retry_after(response, job))
    raise ActionError(f"HTTP {status} from {target.host}: {response.text[:200]}")


def _send(
    target: Target, method: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> Any:
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: we connect where we checked
    adapter = _pinned_adapter(target.host)
    session.mount(f"{target.scheme}://", adapter)
    headers = {**headers, "Host": _host_header(target)}
    unreachable: list[str] = []
    try:
        for address in target.addresses:
            try:
                return session.request(
                    method,
                    _pinned_url(target, address),
                    headers=headers,
                    data=body,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                reason = _not_connected(exc, timeout)
                if reason is None:
                    raise _request_failed(exc, target, timeout) from None
                # Nothing reached this address, so the next checked one may take the request.
                unreachable.append(f"{address}: {reason}")
    finally:
        session.close()
    raise Transient(f"cannot connect to {target.host} ({'; '.join(unreachable)})")


def _send_via_proxy(
    target: Target,
    proxy: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> Any:
    """One request through the proxy, to the checked URL (under its name: the proxy's
    access rules and the target's virtual hosts see the name, and TLS checks it)."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False  # this proxy and no other, whatever the environment says
    session.mount(f"{target.scheme}://", HTTPAdapter(max_retries=0))
    # Set as without a proxy, so a Host among the action's headers cannot pick another
    # site of the server inside a tunnel.
    headers = {**headers, "Host": _host_header(target)}
    try:
        return session.request(
            method,
            target.url,
            headers=headers,
            data=body,
            timeout=timeout,
            allow_redirects=False,
            proxies={"http": proxy, "https": proxy},
        )
    except requests.RequestException as exc:
        raise _proxy_failed(exc, target, proxy, timeout) from None
    finally:
        session.close()


def _proxy_failed(exc: Exception, target: Target, proxy: str, timeout: float) -> Exception:
    """The failure of a request through the proxy, in words that never hold its password."""
    import requests

    where = f"the proxy {_proxy_address(proxy)}"
    if isinstance(exc, requests.exceptions.ProxyError):
        status = _tunnel_status(exc)
        if status is None:
            reason = _proxy_reason(exc, timeout) or _scrub(_reason(exc), proxy)
            return Transient(f"cannot connect to {where}: {reason}")
        # The proxy answered the CONNECT but opened no tunnel: 407 (a wrong login) or 403
        # (its rules) stay so, a 502 or 503 may pass.
        message = f"{where} opened no tunnel to {target.host}: HTTP {status}"
        if status == 407:
            message += f" ({_LOGIN_HINT})"
        if status >= 500 or status in TRANSIENT_STATUS:
            return Transient(message)
        return ActionError(message)
    failed = _request_failed(exc, target, timeout)
    text = _scrub(str(failed), proxy)
    if isinstance(failed, Transient):
        return Transient(f"{text} (through {where})")
    return ActionError(f"{text} (through {where})")


def _proxy_address(proxy: str) -> str:
    """host:port of the proxy, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(proxy)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    host = parts.hostname or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tunnel_status(exc: Exception) -> int | None:
    """The status the proxy answered a CONNECT with, when that is why it failed."""
    found = re.search(r"Tunnel connection failed: (\d{3})", str(exc))
    return int(found.group(1)) if found else None


def _proxy_reason(exc: Exception, timeout: float) -> str | None:
    """Why the proxy could not be reached, in the OS's words rather than urllib3's
    wrappers; None when no connection error is among the causes."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
            return f"no connection within {timeout:g}s"
        if isinstance(error, NewConnectionError):
            cause = error.__cause__
            return cause.strerror if isinstance(cause, OSError) and cause.strerror else None
        nested = [a for a in error.args if isinstance(a, BaseException)]
        nested += [getattr(error, "reason", None), getattr(error, "original_error", None)]
        stack.extend(e for e in nested if isinstance(e, BaseException))
    return None


def _scrub(text: str, proxy: str) -> str:
    """`text` without the proxy's credentials, had an error message repeated them."""
    from urllib.parse import unquote, urlsplit

    text = text.replace(proxy, masked(proxy))
    password = urlsplit(proxy).password
    if password:
        for spelling in {password, unquote(password)}:
            text = text.replace(spelling, "***")
    return text


def _host_header(target: Target) -> str:
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    return name if target.port == _default_port(target) else f"{name}:{target.port}"


def _default_port(target: Target) -> int:
    return 443 if target.scheme == "https" else 80


def _pinned_url(target: Target, address: str) -> str:
    """`target.url` with `address` in place of the host: no lookup happens on the way."""
    from urllib.parse import urlsplit, urlunsplit

    literal = f"[{address}]" if ":" in address else address
    netloc = literal if target.port == _default_port(target) else f"{literal}:{target.port}"
    parts = urlsplit(target.url)
    return urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))


def _not_connected(exc: Exception, timeout: float) -> str | None:
    """Why no connection came about, when that is all that failed; else None.

    Only then may the next address be tried: the request was never sent. A read timeout
    or a connection dropped after sending is not this (the other side may have acted).
    """
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {timeout:g}s"
    if isinstance(exc, requests.ConnectionError) and exc.args:
        inner = exc.args[0]
        # With max_retries=0 urllib3 wraps the connect error (refused, unreachable) in
        # MaxRetryError; a TLS failure or a dropped connection has another reason.
        if isinstance(inner, MaxRetryError) and isinstance(inner.reason, NewConnectionError):
            cause = inner.reason.__cause__
            if isinstance(cause, OSError) and cause.strerror:
                return cause.strerror
            return _reason(inner.reason)
    return None


def _request_failed(exc: Exception, target: Target, timeout: float) -> Exception:
    import requests

    if isinstance(exc, requests.Timeout):
        return Transient(f"no answer from {target.host} within {timeout:g}s")
    if isinstance(exc, requests.ConnectionError):
        return Transient(f"cannot connect to {target.host}: {_reason(exc)}")
    return ActionError(f"request to {target.host} failed: {exc}")


def _pinned_adapter_class() -> Any:
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        """Connects to the checked address while TLS checks the certificate for the name."""

        def __init__(self, hostname: str) -> None:
            self._hostname = hostname
            super().__init__(max_retries=0)

        def init_poolmanager(
            self, connections: int, maxsize: int, block: bool = False, **kwargs: Any
        ) -> None:
            kwargs["server_hostname"] = self._hostname
            kwargs["assert_hostname"] = self._hostname
            super().init_poolmanager(connections, maxsize, block, **kwargs)

    return PinnedAdapter


def _pinned_adapter(hostname: str) -> Any:
    return _pinned_adapter_class()(hostname)


def _retry_after(response: Any, job: Job) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - job.services.clock()).total_seconds())


def _response_body(response: Any) -> Any:
    if "json" in response.headers.get("Content-Type", ""):
        try:
            return response.json()
        except ValueError:
            return None
    return None


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
