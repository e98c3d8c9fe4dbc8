"""Digests: a notify or email action's messages collected and sent together.

`digest: {every: 1d, at: "08:00"}` on a notify or email action turns each of its
messages into an item of a digest, one per recipient and sending: the manager who
would get twelve e-mails about twelve quiet deals gets one, at eight, listing twelve.

Collecting is the action's effect: its recipients are resolved as the message would be
(owner, role:NAME, user ids, addresses), and the rendered subject and body are stored
for each (state/digests.py), under the action's own key, so a change handled twice is
collected once. The sending is a pending row (action_type "digest") per recipient and
sending time, keyed by both: it is claimed, retried and recorded like any due action,
and both the items and the row live in the state database, so a restart loses neither.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from crmflow.engine.effects.base import Job, Outcome
from crmflow.errors import ActionError
from crmflow.keys import action_key
from crmflow.rules.digest import DigestSpec
from crmflow.timeutil import format_utc

if TYPE_CHECKING:
    from crmflow.rules.workflow import Action, Workflow
    from crmflow.state.digests import DigestItem
    from crmflow.state.store import State

# The action type of a digest's sending row in crmflow_pending.
DIGEST = "digest"
# How a collected action's outcome begins (history, log).
COLLECTED = "collected for the digest of"


def recipients(job: Job) -> tuple[list[str], list[str]]:
    """The action's recipients, each as the digest names them ("user:7",
    "email:a@example.com"), and those not found (for the outcome's words)."""
    if job.action.type == "email":
        from crmflow.engine.effects.mail import addresses

        found = [
            f"email:{address}"
            for field in ("to", "cc", "bcc")
            for address in addresses(job.params.get(field), field)
        ]
        return list(dict.fromkeys(found)), []
    from crmflow.engine.effects.messages import resolve_recipients

    resolved = resolve_recipients(job, job.params.get("to"))
    found = [f"user:{user_id}" for user_id in resolved.users]
    found += [f"email:{address}" for address in resolved.addresses]
    return found, resolved.missing


def bucket(workflow: str, action_index: int, recipient: str, sending: datetime) -> str:
    """The key of one recipient's digest at one sending: its pending row's key."""
    return action_key(workflow, DIGEST, recipient, format_utc(sending), action_index)


def collect(state: State, job: Job, spec: DigestSpec, tz: tzinfo) -> Outcome:
    """The action's message added to each recipient's next digest (its effect)."""
    found, missing = recipients(job)
    lacking = f"; not found: {', '.join(missing)}" if missing else ""
    if not found:
        return Outcome("skipped", f"no recipients{lacking}")
    sending = spec.next_sending(job.now, tz)
    subject = str(job.params.get("subject") or "")
    body = str(job.params.get("body") or "")
    event = job.event
    for recipient in found:
        key = bucket(job.workflow.id, job.action.index, recipient, sending)
        state.collect(
            key,
            job.key,
            workflow=job.workflow.id,
            entity=event.entity,
            record_id=event.id,
            subject=subject,
            body=body,
            at=job.now,
        )
        state.schedule(
            key=key,
            workflow=job.workflow.id,
            workflow_version=job.workflow.version,
            entity=event.entity,
            record_id=None,
            action_index=job.action.index,
            action_type=DIGEST,
            due=sending,
            context={
                "recipient": recipient,
                "sending": format_utc(sending),
                "type": job.action.type,
                "via": job.params.get("via"),
                "reply_to": job.params.get("reply_to"),
            },
        )
    names = ", ".join(r.replace("user:", "user ").removeprefix("email:") for r in found)
    return Outcome("done", f"{COLLECTED} {format_utc(sending)} to {names}{lacking}")


def message(
    workflow: Workflow,
    action: Action,
    spec: DigestSpec | None,
    context: dict[str, Any],
    items: list[DigestItem],
    tz: tzinfo,
) -> dict[str, Any]:
    """The parameters of the one message that sends a digest's items to its recipient
    (`spec` None: the action has lost its `digest:` since; what it collected goes)."""
    if not items:
        raise ActionError("the digest has no items")
    count = len(items)
    title = (spec.subject if spec is not None else None) or workflow.title
    subject = f"{title} ({count} item{'s' if count != 1 else ''})"
    first, last = (_local(item.at, tz) for item in (items[0], items[-1]))
    span = f"at {first}" if first == last else f"from {first} to {last}"
    lines = [f"{count} item{'s' if count != 1 else ''}, collected {span} ({tz}):", ""]
    for number, item in enumerate(items, 1):
        lines.append(f"{number}. {item.subject}")
        lines.extend(f"   {line}" for line in item.body.splitlines() if line.strip())
    kind, _, who = str(context["recipient"]).partition(":")
    params: dict[str, Any] = {"subject": subject, "body": "\n".join(lines)}
    if action.type == "email":
        params["to"] = [who]
        if context.get("reply_to"):
            params["reply_to"] = context["reply_to"]
    else:
        params["to"] = [int(who) if kind == "user" and who.isdigit() else who]
        params["via"] = context.get("via") or ["inbox"]
    return params


def _local(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")
