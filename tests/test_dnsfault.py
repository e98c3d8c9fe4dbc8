"""The DNS fault harness works in a real subprocess, through crmflow's own resolver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.dnsfault import dns_fault_env

HOST = "hooks.crmflow.test"

# What a daemon would do with the name: crmflow's URL check (its resolver), then a
# connection by name as requests would make one; and a name the harness leaves alone.
PROBE = """
import json, socket, sys
from crmflow.engine.effects.netguard import UrlPolicy, Unresolved

host, port = sys.argv[1], int(sys.argv[2])
url = f"http://{host}:{port}/hook"
seen = {"localhost": bool(socket.getaddrinfo("localhost", port))}
try:
    seen["addresses"] = list(UrlPolicy([url]).check(url).addresses)
    socket.create_connection((host, port), timeout=5).close()
    seen["connected"] = True
except Unresolved as exc:
    seen["unresolved"] = [str(exc), exc.temporary]
print(json.dumps(seen))
"""


def probe(env: dict[str, str], port: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, HOST, str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_the_name_fails_with_eai_again_while_the_flag_exists_then_reaches_loopback(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "dns-down"
    env = {**os.environ, **dns_fault_env(tmp_path / "dnsfault", HOST, flag)}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        flag.touch()
        down = probe(env, port)
        flag.unlink()
        up = probe(env, port)
    assert down == {
        "localhost": True,
        "unresolved": [f"cannot resolve {HOST}: Temporary failure in name resolution", True],
    }
    assert up == {"localhost": True, "addresses": ["127.0.0.1"], "connected": True}
