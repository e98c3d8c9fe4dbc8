"""Deterministic idempotency keys: (workflow, record, change version, action index).

The same change seen twice (a replayed event, a restart) gives the same key, so CRM
writes, webhooks (`webhook-id`) and e-mails (`Message-ID`) can be recognised as repeats.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def record_version(record: dict[str, Any], *extra: Any) -> str:
    """A hash of a row's values (plus whatever else tells this change apart)."""
    payload = json.dumps([record, *extra], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def action_key(
    workflow: str, entity: str, record_id: Any, version: str, action_index: int, *suffix: Any
) -> str:
    parts = [workflow, entity, str(record_id), version, str(action_index), *map(str, suffix)]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"cf_{digest}"
