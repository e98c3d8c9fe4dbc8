"""Outbound rate limits: webhooks per host and e-mails per minute.

A sliding window of the last minute's sends per key; when it is full, the action is
not refused but moved to when a slot frees up.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit


class RateLimits:
    def __init__(
        self, *, webhook_per_host: int | None = None, email_per_minute: int | None = None
    ) -> None:
        self.webhook_per_host = webhook_per_host
        self.email_per_minute = email_per_minute
        self._sent: dict[str, deque[float]] = {}

    def _key(self, action_type: str, params: Any) -> tuple[str, int] | None:
        if action_type == "webhook" and self.webhook_per_host and isinstance(params, dict):
            host = urlsplit(str(params.get("url", ""))).hostname or "?"
            return f"webhook:{host}", int(self.webhook_per_host)
        if action_type in ("email", "notify") and self.email_per_minute:
            if action_type == "notify" and isinstance(params, dict):
                via = params.get("via") or ["inbox"]
                if "email" not in (via if isinstance(via, list) else [via]):
                    return None
            return "email", int(self.email_per_minute)
        return None

    def wait(self, action_type: str, params: Any, now: datetime) -> float:
        """Seconds until this action may go out (0: now); a send is counted when it is 0."""
        found = self._key(action_type, params)
        if found is None:
            return 0.0
        key, limit = found
        window = self._sent.setdefault(key, deque())
        moment = now.timestamp()
        while window and window[0] <= moment - 60:
            window.popleft()
        if len(window) >= limit:
            return window[0] + 60 - moment
        window.append(moment)
        return 0.0
