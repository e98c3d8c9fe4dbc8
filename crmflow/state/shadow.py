"""The state of a shadow run (`crmflow run --shadow`): its own database, in which what
an action would have done is recorded as `shadow`, never as `done`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from crmflow.state.history import DoneAction, _output
from crmflow.state.store import State
from crmflow.state.tables import history


class ShadowState(State):
    def record(self, outcome: str, **fields: Any) -> None:
        if outcome == "done" and fields.get("action_type"):
            outcome = "shadow"
        super().record(outcome, **fields)

    def done_action(self, key: str) -> DoneAction | None:
        """A shadow action counts as done: a restart does not record it twice."""
        query = (
            select(history.c.at, history.c.output)
            .where(history.c.key == key, history.c.outcome == "shadow")
            .order_by(history.c.id)
            .limit(1)
        )
        # Through the unit of work, whose queued rows are written first.
        with self._connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return DoneAction(datetime.fromtimestamp(row.at, UTC), _output(row.output))
