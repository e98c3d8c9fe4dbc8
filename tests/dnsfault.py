"""A temporary DNS failure for a subprocess: the one fault this machine cannot make for real.

`crmflow run` resolves webhook hosts with `socket.getaddrinfo`. `dns_fault_env` writes a
`sitecustomize.py`, which Python imports at start-up from any folder on PYTHONPATH, that
wraps `getaddrinfo` for one made-up host name: while a flag file exists the name fails
with EAI_AGAIN ("Temporary failure in name resolution"), as when the resolver is down;
otherwise it resolves to 127.0.0.1, where the test's server listens. Every other name
resolves as usual. A test creates and removes the flag to start and end the outage.

The wrapper is not in effect for `python -I`, `-S` or `-E`, and it hides any other
`sitecustomize` further down the path (a virtualenv has none).
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = '''\
"""Written by tests/dnsfault.py: one host name fails with EAI_AGAIN while a flag exists."""

import os
import socket

_HOST = {host!r}
_FLAG = {flag!r}
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".") == _HOST:
        if os.path.exists(_FLAG):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return _real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
    return _real_getaddrinfo(host, port, *args, **kwargs)


# socket.create_connection looks the module global up on each call, so this reaches
# urllib3 and requests as well as direct callers.
socket.getaddrinfo = _getaddrinfo
'''


def dns_fault_env(folder: Path, host: str, flag: Path) -> dict[str, str]:
    """Write the `sitecustomize.py` into `folder`; returns the environment to add.

    In a subprocess started with these additions, `host` fails with EAI_AGAIN while
    `flag` exists and resolves to 127.0.0.1 otherwise.
    """
    folder.mkdir(parents=True, exist_ok=True)
    text = SITECUSTOMIZE.format(host=host.lower().rstrip("."), flag=str(flag.resolve()))
    (folder / "sitecustomize.py").write_text(text, encoding="utf-8")
    # First on the path, so it is the sitecustomize imported; what was there stays after.
    path = [str(folder.resolve())]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(path)}
