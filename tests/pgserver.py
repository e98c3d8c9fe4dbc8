"""A throw-away PostgreSQL server on 127.0.0.1 for the test session.

CRMFLOW_TEST_POSTGRES (an SQLAlchemy URL of a server to use) wins; otherwise the Debian
binaries start a private cluster in a temporary folder (as the `postgres` user when the
tests run as root, since PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_database(admin_url: str, prefix: str = "t") -> str:
    """A new, empty database on the server of `admin_url`; its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


class PostgresServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="crmflow-pg-"))
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> str:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        data = self.folder / "data"
        subprocess.run(
            [
                *self.as_user,
                initdb,
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        self._run()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self) -> None:
        """Start the server on its data folder and wait until it takes connections."""
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        data = self.folder / "data"
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
            f"-c unix_socket_directories={self.folder} -c max_connections=200"
        )
        subprocess.run(
            [
                *self.as_user,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(self.folder / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)

    def pause(self) -> None:
        """Stop the server, keeping its data: `resume` starts it again on the same port."""
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        subprocess.run(
            [*self.as_user, pg_ctl, "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    def resume(self) -> None:
        self._run()

    def stop(self) -> None:
        pg_ctl = _binary("pg_ctl")
        if pg_ctl:
            subprocess.run(
                [*self.as_user, pg_ctl, "-D", str(self.folder / "data"), "-m", "fast", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def least_privilege(crm_url: str, *, triggers: bool = False) -> tuple[str, str]:
    """The README's least-privilege role on the CRM database at `crm_url` (created by its
    owner), and a state database the role owns: (crm URL, state URL), as that role.

    SELECT, INSERT, UPDATE and DELETE on the CRM's tables, USAGE on their sequences,
    crmflow_applied made by the owner with SELECT, INSERT; triggers mode adds CREATE on
    the schema (crmflow_changelog and the trigger function) and TRIGGER on the tables.
    """
    from sqlalchemy import create_engine, text

    from crmflow.crm.database import CRM
    from crmflow.rules.entities import builtin_model

    base, name = crm_url.rsplit("/", 1)
    role = f"app_{name}"
    CRM(crm_url, builtin_model()).engine.dispose()  # the owner makes crmflow_applied
    engine = create_engine(crm_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in (
            f'CREATE ROLE "{role}" LOGIN',
            f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"',
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
            f'REVOKE INSERT, UPDATE, DELETE ON crmflow_applied FROM "{role}"',
            f'GRANT SELECT, INSERT ON crmflow_applied TO "{role}"',
            *(
                [
                    f'GRANT CREATE ON SCHEMA public TO "{role}"',
                    f'GRANT TRIGGER ON ALL TABLES IN SCHEMA public TO "{role}"',
                ]
                if triggers
                else []
            ),
            f'CREATE DATABASE "s_{name}" OWNER "{role}"',
        ):
            conn.execute(text(statement))
    engine.dispose()
    host = base.split("@", 1)[1]
    scheme = base.split("://", 1)[0]
    return f"{scheme}://{role}@{host}/{name}", f"{scheme}://{role}@{host}/s_{name}"
