"""Digest items: what `digest:` actions collected, until their sending (engine/digests.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from crmflow.state.tables import Tables, digest_items, epoch


@dataclass(frozen=True)
class DigestItem:
    key: str
    workflow: str
    entity: str
    record_id: str | None
    subject: str
    body: str
    at: datetime


class DigestStore(Tables):
    """State's methods over crmflow_digest_items."""

    def collect(
        self,
        bucket: str,
        key: str,
        *,
        workflow: str,
        entity: str,
        record_id: Any,
        subject: str,
        body: str,
        at: datetime,
    ) -> bool:
        """Add an item to a digest; False when the same action is in it already."""
        row = {
            "bucket": bucket,
            "key": key,
            "workflow": workflow,
            "entity": entity,
            "record_id": None if record_id is None else str(record_id),
            "subject": subject,
            "body": body,
            "at": epoch(at),
        }
        return self._insert_new(digest_items, row, digest_items.c.id) is not None

    def digest(self, bucket: str) -> list[DigestItem]:
        """A digest's items, in the order they were collected."""
        query = (
            select(digest_items)
            .where(digest_items.c.bucket == bucket)
            .order_by(digest_items.c.at, digest_items.c.id)
        )
        with self._connect() as conn:
            return [
                DigestItem(
                    r.key,
                    r.workflow,
                    r.entity,
                    r.record_id,
                    r.subject,
                    r.body,
                    datetime.fromtimestamp(r.at, UTC),
                )
                for r in conn.execute(query)
            ]

    def prune_digests(self, before: datetime) -> int:
        """Items collected before `before` (their digests went long ago)."""
        with self._begin() as conn:
            result = conn.execute(digest_items.delete().where(digest_items.c.at < epoch(before)))
            return int(result.rowcount or 0)
