"""Effects that tell people: notify (inbox and e-mail to CRM users), email, warn."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from crmflow.engine.effects.base import Job, Outcome, Transient
from crmflow.engine.effects.mail import Attachment, Mail, MailError, addresses, check_header
from crmflow.errors import ActionError


@dataclass
class Recipients:
    users: dict[Any, dict[str, Any]] = field(default_factory=dict)  # id -> user record
    addresses: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def resolve_recipients(job: Job, targets: Any) -> Recipients:
    """User ids, `owner`, `actor`, `role:NAME` and e-mail addresses, resolved."""
    crm = job.crm
    found = Recipients()

    def add_user(user_id: Any, label: str) -> None:
        if user_id is None:
            found.missing.append(f"{label} (none)")
            return
        user = crm.get("user", user_id)
        if user is None:
            found.missing.append(f"{label} (no user {user_id})")
        else:
            found.users[user["id"]] = user

    for target in _as_list(targets):
        if isinstance(target, bool):
            raise ActionError(f"{target!r} is not a recipient")
        if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
            add_user(int(target), f"user {target}")
        elif target == "owner":
            record = job.record
            owner = record.get("owner_id", record.get("assignee_id"))
            if owner is None and record.get("id") is not None:
                fresh = crm.get(job.event.entity, record["id"]) or {}
                owner = fresh.get("owner_id", fresh.get("assignee_id"))
            add_user(owner, "owner")
        elif target == "actor":
            add_user(job.event.actor, "actor")
        elif isinstance(target, str) and target.startswith("role:"):
            role = target[5:]
            users = crm.find("user", {"role": role})
            users = [u for u in users if u.get("active", True) is not False]
            if not users:
                found.missing.append(f"{target} (nobody has it)")
            for user in users:
                found.users[user["id"]] = user
        elif isinstance(target, str) and "@" in target:
            found.addresses.extend(addresses(target, "to"))
        elif isinstance(target, str) and _UUID.fullmatch(target.strip()):
            add_user(target.strip(), f"user {target}")  # ids are uuids in many CRMs
        else:
            raise ActionError(
                f"{target!r} is not a recipient (user id, owner, actor, role:NAME "
                "or an e-mail address)"
            )
    return found


def _send(
    job: Job,
    to: list[str],
    subject: str,
    body: str,
    *,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    html: str | None = None,
    reply_to: str | None = None,
    attached: list[Attachment] | None = None,
) -> str:
    settings = job.services.config.email
    sender = settings.sender
    try:
        original = None
        redirect = settings.redirect_to
        if redirect:
            original = to + (cc or []) + (bcc or [])
            to, cc, bcc = addresses(redirect, "email.redirect_to"), [], []
        mail = Mail(
            sender,
            to,
            cc or [],
            bcc or [],
            check_header("Subject", subject),
            body,
            html,
            job.key,
            reply_to,
            original,
            attached or [],
        )
        domain = sender.rsplit("@", 1)[-1] if "@" in sender else "crmflow.local"
        return job.services.mailer.send(mail, domain)
    except MailError as exc:
        if exc.transient:
            raise Transient(str(exc)) from None
        raise ActionError(str(exc)) from None


def notify(job: Job) -> Outcome:
    params = job.params
    via = _as_list(params.get("via")) or ["inbox"]
    subject = str(params.get("subject") or "")
    body = str(params.get("body") or "")
    found = resolve_recipients(job, params.get("to"))
    done: list[str] = []
    if "inbox" in via:
        users = list(found.users)
        if found.addresses:
            for user in job.crm.find("user", {}):
                if str(user.get("email", "")).lower() in {a.lower() for a in found.addresses}:
                    users.append(user["id"])
        users = list(dict.fromkeys(users))
        for user_id in users:
            _inbox(job, user_id, subject, body, f"{job.key}:inbox:{user_id}")
        if users:
            done.append(
                f"inbox for user{'s' if len(users) > 1 else ''} {', '.join(map(str, users))}"
            )
    if "email" in via:
        to = [str(u["email"]) for u in found.users.values() if u.get("email")]
        to = list(dict.fromkeys(to + found.addresses))
        if to:
            done.append(f"e-mail to {', '.join(to)} ({_send(job, to, subject, body)})")
    missing = f"; not found: {', '.join(found.missing)}" if found.missing else ""
    if not done:
        return Outcome("skipped", f"no recipients{missing}")
    return Outcome("done", "; ".join(done) + missing)


def _inbox(job: Job, user_id: Any, subject: str, body: str, key: str) -> None:
    crm = job.crm
    values = {
        "user_id": user_id,
        "subject": subject,
        "body": body,
        "related_entity": job.event.entity,
        "related_id": job.record.get("id"),
    }
    definition = crm.entity("notification")
    # A CRM's inbox may lack some of these columns (one without related_entity): what it
    # has is filled, the rest left out.
    table = crm.table("notification")
    values = {
        k: v
        for k, v in values.items()
        if k in definition.fields and definition.column(k) in table.c
    }
    crm.once(
        key,
        lambda conn: crm.insert(conn, "notification", values, job.writer),
        workflow=job.workflow.id,
        entity="notification",
    )


def email(job: Job) -> Outcome:
    params = job.params
    to = addresses(params.get("to"), "to")
    cc = addresses(params.get("cc"), "cc")
    bcc = addresses(params.get("bcc"), "bcc")
    opted_out = job.crm.opted_out(to + cc + bcc) if job.services.crm is not None else set()
    if opted_out:
        to = [a for a in to if a not in opted_out]
        cc = [a for a in cc if a not in opted_out]
        bcc = [a for a in bcc if a not in opted_out]
    note = (
        f"; not sent to {', '.join(sorted(opted_out))} (opted out of e-mail)" if opted_out else ""
    )
    if not (to or cc or bcc):
        return Outcome("skipped", "no recipient left" + note if note else "no recipients")
    html = params.get("html")
    result = _send(
        job,
        to,
        str(params.get("subject") or ""),
        str(params.get("body") or ""),
        cc=cc,
        bcc=bcc,
        html=None if html is None else str(html),
        reply_to=params.get("reply_to"),
        attached=attachments(params.get("attach")),
    )
    return Outcome("done", f"e-mail to {', '.join(to + cc + bcc)} ({result}){note}")


def document(job: Job) -> Outcome:
    """The rendered document, kept as the action's output (in the history, for later
    steps: an e-mail attaches it with `attach: "{{ steps.<id> }}"`)."""
    from crmflow.rules.actions import DOCUMENT_MAX_BYTES

    output = job.action.definition.dry_output(job.params, job.services.rng)
    size = len(output["content"].encode())
    if size > DOCUMENT_MAX_BYTES:
        raise ActionError(f"document {output['name']} is larger than 1 MiB once rendered")
    return Outcome("done", f"document {output['name']} ({size} bytes)", output)


def attachments(value: Any) -> list[Attachment]:
    """`attach`: one document (a document action's output) or a list of them."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    found = []
    for item in items:
        if not isinstance(item, dict) or not {"name", "content"} <= set(item):
            raise ActionError(
                f'attach: {str(item)[:80]!r} is not a document (write "{{{{ steps.ID }}}}" '
                "for the output of a document action)"
            )
        name = check_header("attachment name", str(item["name"]))
        found.append(
            Attachment(name, str(item["content"]), str(item.get("content_type") or "text/plain"))
        )
    return found


def warn(job: Job) -> Outcome:
    message = str(job.params.get("message") or "")
    actor = job.event.actor
    shown = f"warning: {message}"
    if job.services.crm is None or actor is None:
        return Outcome("done", shown)
    if job.crm.get("user", actor) is None:
        return Outcome("done", f"{shown} (actor {actor} is no user: no inbox row)")
    _inbox(job, actor, "Warning", message, f"{job.key}:warn")
    return Outcome("done", f"{shown} (inbox row for user {actor})")
