"""RetryPolicy.decide: the one place that says whether a transient failure is retried."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crmflow.engine.effects.base import Outcome
from crmflow.engine.retry import GiveUp, Retry, RetryPolicy


class FixedRandom:
    """A jitter source that always draws `value`."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def transient(detail: str = "HTTP 503", retry_after: float | None = None) -> Outcome:
    return Outcome("failed", detail, transient=True, retry_after=retry_after)


STORED = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=300.0, max_age=3600.0)
INLINE = replace(STORED, max_age=10.0, blocking=True)


@pytest.mark.parametrize(
    ("policy", "attempts", "age", "outcome", "decision"),
    [
        # Exponential backoff with jitter between half and all of base * 2^(n-1).
        (STORED, 1, 0.0, transient(), Retry(0.5)),
        (STORED, 2, 10.0, transient(), Retry(1.0)),
        # Retry-After is followed, up to max_delay.
        (STORED, 1, 0.0, transient(retry_after=30), Retry(30)),
        (STORED, 1, 0.0, transient(retry_after=900), Retry(300)),
        (STORED, 3, 0.0, transient(), GiveUp("HTTP 503 (gave up after 3 attempts)")),
        # A stored retry gives up once the action is older than max_age...
        (STORED, 2, 3601.0, transient(), GiveUp("HTTP 503 (gave up after 2 attempts)")),
        (STORED, 2, 3599.0, transient(retry_after=60), Retry(60)),
        # ...an inline one when the wait would take it past max_age.
        (INLINE, 1, 9.0, transient(retry_after=1), Retry(1)),
        (
            INLINE,
            1,
            9.5,
            transient(retry_after=1),
            GiveUp("HTTP 503 (retrying would pass retry.max_age)"),
        ),
        (INLINE, 3, 0.0, transient(), GiveUp("HTTP 503 (gave up after 3 attempts)")),
    ],
)
def test_retry_policy_decides(
    policy: RetryPolicy, attempts: int, age: float, outcome: Outcome, decision: object
) -> None:
    assert policy.decide(attempts, age, outcome, FixedRandom(0.0)) == decision
