"""What a package needs to add its own actions (entry point group `crmflow.actions`).

from crmflow.plugins import CustomAction, Job, Outcome, Transient

def open_ticket(job: Job) -> Outcome:
    ...  # job.params (rendered), job.key (idempotency key), job.record
    return Outcome("done", "ticket opened", output={"ticket": 42})

TICKET = CustomAction(
    name="ticket",
    doc="open a ticket in the help desk",
    schema={"type": "object", "properties": {"queue": {"type": "string"}}},
    run=open_ticket,
)
"""

from crmflow.engine.effects.base import Job, Outcome, Transient
from crmflow.rules.plugins import CustomAction

__all__ = ["CustomAction", "Job", "Outcome", "Transient"]
