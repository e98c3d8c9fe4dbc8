"""Whether and when a transient failure is tried again: one decision for every path.

`eval` retries inline (blocking its caller); the daemon stores a retry as a pending row
due later. Both ask `RetryPolicy.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crmflow.config import RetrySettings
from crmflow.engine.effects.base import Outcome


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after `pause` seconds."""

    pause: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop trying: `detail` is the failure and why it is final."""

    detail: str


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried (`retry` in crmflow.yaml)."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    max_age: float = 3600.0
    # An inline retry (eval) blocks its caller, so the wait itself must fit in max_age;
    # a stored retry (the daemon) gives up once the action is older than max_age.
    blocking: bool = False

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            base_delay=settings.base_delay.seconds,
            max_delay=settings.max_delay.seconds,
            max_age=settings.max_age.approx_seconds(),
        )

    def delay(self, attempt: int, rng: Any, retry_after: float | None = None) -> float:
        """Seconds before attempt `attempt + 1`: exponential, with jitter, or as asked."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        exponential = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return exponential * (0.5 + rng.random() * 0.5)

    def decide(self, attempts: int, age: float, outcome: Outcome, rng: Any) -> Retry | GiveUp:
        """After a transient failure: retry (after how long) or give up (and why).

        `attempts` counts the tries made, the failed one included; `age` is the seconds
        since the first (blocking: the seconds already waited between tries).
        """
        gave_up = f"{outcome.detail} (gave up after {attempts} attempts)"
        if attempts >= self.max_attempts or (not self.blocking and age > self.max_age):
            return GiveUp(gave_up)
        # Drawn only when a retry is still possible: the jitter consumes the generator.
        pause = self.delay(attempts, rng, outcome.retry_after)
        if self.blocking and age + pause > self.max_age:
            return GiveUp(f"{outcome.detail} (retrying would pass retry.max_age)")
        return Retry(pause)
