"""The SPEC's example (§4): two workflows, one deal update, and the plan it must give.

The library tests and the command-line tests hold both paths to the same plan.
"""

from __future__ import annotations

from typing import Any

BIG_DEAL = """\
id: big-deal-alert
entity: deal
trigger: {on: [created, updated], fields: [amount, probability]}
conditions:
  - amount: {gt: 100000}
  - probability: {gte: 80}
actions:
  - notify:
      to: ["role:management"]
      via: [email, inbox]
      subject: "Big deal: {{ deal.name }} ({{ deal.amount }} {{ deal.currency }})"
      body: "Probability {{ deal.probability }}%"
"""
WON = """\
id: deal-won-webhook
entity: deal
trigger: {on: updated}
conditions:
  stage: {changed_to: won}
actions:
  - webhook: {url: "https://hooks.example.com/x"}
"""
EVENT: dict[str, Any] = {
    "entity": "deal",
    "event": "updated",
    "record": {
        "id": 42,
        "name": "ACME",
        "amount": 250000,
        "currency": "EUR",
        "probability": 90,
        "stage": "negotiation",
    },
    "previous": {
        "id": 42,
        "name": "ACME",
        "amount": 90000,
        "currency": "EUR",
        "probability": 90,
        "stage": "negotiation",
    },
    "actor": 7,
    "at": "2026-11-22T10:00:00Z",
}

PLAN: dict[str, Any] = {
    "event": {"entity": "deal", "event": "updated", "id": 42},
    "rules": [
        {
            "rule": "big-deal-alert",
            "matched": True,
            "actions": [
                {
                    "type": "notify",
                    "due": "2026-11-22T10:00:00Z",
                    "params": {
                        "to": ["role:management"],
                        "via": ["email", "inbox"],
                        "subject": "Big deal: ACME (250000 EUR)",
                        "body": "Probability 90%",
                    },
                }
            ],
        },
        {
            "rule": "deal-won-webhook",
            "matched": False,
            "reason": "stage changed_to won: was negotiation, unchanged",
        },
    ],
}
