"""The loop guard: a chain of crmflow's own writes may not run in circles.

A change caused by crmflow's write carries the chain of (workflow, entity, id) steps that
led to it. A workflow fires again for such a change only while the chain is shorter than
`daemon.chain_depth` and has not passed through the same workflow and record before.
"""

from __future__ import annotations

from dataclasses import dataclass

from crmflow.engine.events import Event
from crmflow.rules.workflow import Workflow


@dataclass(frozen=True, slots=True)
class ChainGuard:
    depth: int

    def __call__(self, workflow: Workflow, event: Event) -> str | None:
        """Why `workflow` may not fire for `event` (a loop), or None when it may."""
        chain = event.chain or []
        if not chain:
            return None
        path = " -> ".join(str(c[0]) for c in chain)
        if len(chain) >= self.depth:
            return f"loop stopped: chain depth {self.depth} reached ({path})"
        step = [workflow.id, event.entity, str(event.id)]
        if any([str(c[0]), str(c[1]), str(c[2])] == step for c in chain):
            return (
                f"loop stopped: {workflow.id} already fired for {event.entity} {event.id} "
                f"in this chain ({path})"
            )
        return None
