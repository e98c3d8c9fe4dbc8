"""The sms effect: one request to the configured gateway per recipient.

The gateway is the operator's (`sms:` in crmflow.yaml), not a URL a workflow names, so
it is trusted as the SMTP server is: no allow list. Its token comes from the
environment. Each message carries its own idempotency key (`Idempotency-Key`, and `key`
in the body) so a gateway that honours it sends a repeated request once.
"""

from __future__ import annotations

import os
import re
from typing import Any

from crmflow.engine.effects.base import Job, Outcome, Transient
from crmflow.engine.effects.messages import resolve_recipients
from crmflow.errors import ActionError

# E.164: a plus, then up to 15 digits; spaces and dashes as people write them are dropped.
_PHONE = re.compile(r"\+[1-9]\d{6,14}")
_SEPARATORS = re.compile(r"[\s\-/().]")
_DEFAULT_BODY = {
    "from": "{{ from }}",
    "to": "{{ to }}",
    "text": "{{ text }}",
    "reference": "{{ key }}",
}


def phone(text: str) -> str | None:
    """`text` as an E.164 number, or None when it is not one."""
    number = _SEPARATORS.sub("", text)
    return number if _PHONE.fullmatch(number) else None


def sms(job: Job) -> Outcome:
    settings = job.services.config.sms
    if not settings.gateway:
        raise ActionError("sms: no gateway is configured (sms: in crmflow.yaml)")
    text = str(job.params.get("text") or "")
    targets = job.params.get("to")
    numbers: list[str] = []
    others: list[Any] = []
    for target in targets if isinstance(targets, list) else [targets]:
        number = phone(target) if isinstance(target, str) else None
        (numbers if number else others).append(number or target)
    missing: list[str] = []
    if others:
        found = resolve_recipients(job, others)
        for user in found.users.values():
            written = str(user.get("phone") or "")
            number = phone(written)
            if number:
                numbers.append(number)
            elif written:
                missing.append(
                    f"user {user.get('id')} (phone {written!r} is not in international "
                    "form, +country code)"
                )
            else:
                missing.append(f"user {user.get('id')} (no phone number)")
        missing += found.missing
        if found.addresses:
            missing += [f"{a} (an e-mail address)" for a in found.addresses]
    numbers = list(dict.fromkeys(numbers))
    note = f"; not reached: {', '.join(missing)}" if missing else ""
    if not numbers:
        return Outcome("skipped", f"no phone numbers{note}")
    # Every number is tried, whatever another one met: one refusal does not keep the
    # others from their message. A retry sends each again with its own key (the same
    # as before), which a gateway that honours Idempotency-Key sends once.
    sent: list[str] = []
    refused: list[str] = []
    busy: Transient | None = None
    for index, number in enumerate(numbers):
        try:
            _send(job, number, text, f"{job.key}:sms:{index}")
            sent.append(number)
        except ActionError as exc:
            refused.append(str(exc))
        except Transient as exc:
            busy = busy or exc
    done = f"text message to {', '.join(sent)}" if sent else "no text message sent"
    if refused:
        raise ActionError(f"{'; '.join(refused)} ({done}){note}")
    if busy is not None:
        raise Transient(f"{busy} ({done})", busy.retry_after)
    return Outcome("done", f"{done}{note}")


def _send(job: Job, number: str, text: str, key: str) -> None:
    import requests

    from crmflow.rules.templates import Template, TemplateFailure

    settings = job.services.config.sms
    values = {"to": number, "text": text, "from": settings.sender or "", "key": key}
    # The body's templates are the operator's; the message text is a value, never a template.
    try:
        body = {
            name: Template(value).render(values) if isinstance(value, str) else value
            for name, value in (settings.body or _DEFAULT_BODY).items()
        }
    except TemplateFailure as exc:
        raise ActionError(f"sms.body in the configuration: {exc}") from None
    headers = {"Idempotency-Key": key, "User-Agent": "crmflow"}
    if settings.token_env:
        headers["Authorization"] = f"Bearer {os.environ.get(settings.token_env, '')}"
    sending: dict[str, Any] = {"json": body} if settings.format == "json" else {"data": body}
    try:
        response = requests.post(
            settings.gateway,  # type: ignore[arg-type]
            headers=headers,
            timeout=settings.timeout.approx_seconds(),
            allow_redirects=False,
            **sending,
        )
    except requests.RequestException as exc:
        raise Transient(f"sms gateway unreachable: {type(exc).__name__}") from None
    if response.status_code in (408, 429) or response.status_code >= 500:
        after = response.headers.get("Retry-After")
        retry_after = float(after) if after and after.isdigit() else None
        raise Transient(f"sms gateway answered {response.status_code}", retry_after)
    if response.status_code >= 300:
        raise ActionError(
            f"sms gateway refused the message to {number}: HTTP {response.status_code} "
            f"{response.text[:200]!r}"
        )
