"""The daemons sharing one state: flags (PAUSED), heartbeats, the registry and who leads.

A daemon registers with a heartbeat and the timeout after which it counts as gone, so
`crmflow status` (another process) can tell a live daemon from a killed one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from crmflow.state.tables import Tables, daemons, epoch, meta

# The flag that holds every action (`crmflow pause`) until `crmflow resume` clears it.
PAUSED = "paused"
# A row from before v3 has no timeout of its own; it gets this one.
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
# A gone daemon stays listed, as gone, for an hour after its heartbeat timed out, so a
# crash is still visible to whoever looks next; after that the leader's housekeeping
# deletes its row (State.prune_daemons), and `crmflow status` leaves it out even where no
# leader prunes (a SQLite daemon that died and was not restarted). A fixed period rather
# than a setting: the row only serves as a notice that the daemon went.
GONE_RETENTION = 3600.0


def gone_since(row: dict[str, Any]) -> float:
    """When (epoch seconds) the daemon of a crmflow_daemons row counts as gone, unless it
    beats again first: its last heartbeat plus its own timeout."""
    timeout = row.get("heartbeat_timeout")
    return float(row["heartbeat_at"]) + (
        DEFAULT_HEARTBEAT_TIMEOUT if timeout is None else float(timeout)
    )


class ClusterStore(Tables):
    """State's methods over crmflow_meta's flags and crmflow_daemons."""

    # -- control ----------------------------------------------------------------------
    def flag(self, name: str) -> str | None:
        with self._connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == name)).scalar()

    def flags(self, prefix: str) -> dict[str, str]:
        """The flags whose names start with `prefix` (held workflows), by name."""
        query = select(meta.c.key, meta.c.value).where(meta.c.key.startswith(prefix))
        # Through the unit of work, if one is open: it may hold the database (SQLite).
        with self._connect() as conn:
            return {row.key: row.value for row in conn.execute(query)}

    def set_flag(self, name: str, value: str | None) -> None:
        with self._begin() as conn:
            conn.execute(meta.delete().where(meta.c.key == name))
            if value is not None:
                conn.execute(insert(meta).values(key=name, value=value))

    # -- the daemons sharing this state ----------------------------------------------
    def heartbeat(
        self,
        daemon_id: str,
        host: str,
        pid: int,
        leader: bool | None,
        started: float,
        *,
        timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        took_lead: bool = False,
    ) -> None:
        """Mark the daemon alive now, registering it when it has no row (yet, or again).

        `leader` None leaves the flag as it is (a beat from a thread that does not know
        whether the lead is still held). `took_lead`: the daemon has just taken the lead,
        so another row's leader flag is stale (a leader that died, or lost its lock) and
        is cleared in the same transaction.
        """
        now = epoch(self.clock())
        values: dict[str, Any] = {"heartbeat_at": now, "heartbeat_timeout": timeout}
        if leader is not None:
            values["leader"] = int(leader)
        with self.engine.begin() as conn:
            if took_lead:
                conn.execute(
                    update(daemons)
                    .where(daemons.c.id != daemon_id, daemons.c.leader != 0)
                    .values(leader=0)
                )
            done = conn.execute(update(daemons).where(daemons.c.id == daemon_id).values(**values))
            if not done.rowcount:
                row = {"id": daemon_id, "host": host, "pid": pid, "started_at": started}
                conn.execute(insert(daemons).values(**{"leader": 0, **row, **values}))

    def forget_daemon(self, daemon_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(daemons.delete().where(daemons.c.id == daemon_id))

    def daemons(self) -> list[dict[str, Any]]:
        """Every registered daemon's row, oldest first, gone ones included."""
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(daemons).order_by(daemons.c.started_at))
            ]

    def prune_daemons(self, now: datetime, retention: float = GONE_RETENTION) -> int:
        """Delete the rows of daemons gone (heartbeat timed out) for over `retention` s."""
        gone_at = daemons.c.heartbeat_at + func.coalesce(
            daemons.c.heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT
        )
        with self.engine.begin() as conn:
            result = conn.execute(daemons.delete().where(gone_at < epoch(now) - retention))
            return int(result.rowcount or 0)


def daemon_rows(state: ClusterStore, now: datetime) -> list[dict[str, Any]]:
    """The daemons sharing this state, each `running` or `gone`, and which one leads.

    A daemon is gone once its last heartbeat is older than the timeout it registered
    with (a daemon killed with SIGKILL never says goodbye); a gone daemon does not lead,
    whatever its row says. Of the running daemons whose rows say they lead, the freshest
    beat wins: two claim it only for the moment between a takeover and the old leader's
    next tick, which clears its flag. Daemons gone for longer than GONE_RETENTION are
    left out, whether or not a leader has deleted their rows yet.
    """
    moment = now.timestamp()
    listed = []
    for row in state.daemons():
        gone_at = gone_since(row)
        if moment - gone_at <= GONE_RETENTION:
            listed.append((row, moment > gone_at))
    claims = [row for row, gone in listed if row["leader"] and not gone]
    leader = max(claims, key=lambda row: row["heartbeat_at"])["id"] if claims else None
    return [
        {
            "id": row["id"],
            "host": row["host"],
            "pid": row["pid"],
            "leader": row["id"] == leader,
            "state": "gone" if gone else "running",
            "seen_seconds_ago": round(moment - row["heartbeat_at"], 1),
        }
        for row, gone in listed
    ]
