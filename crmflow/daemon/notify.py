"""systemd's notify protocol: `READY=1` once the daemon works, `WATCHDOG=1` each tick.

The protocol is one datagram to the socket in `$NOTIFY_SOCKET` (a path, or `@name` in
the abstract namespace); without the variable, nothing is sent. A unit with
`Type=notify` and `WatchdogSec=` then knows a daemon that started but hangs from one
that works, and restarts it.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written `@name`; its real name starts with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.ready = False

    def send(self, message: str) -> bool:
        """Send one message; False when there is no socket or it cannot be reached."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError:
            return False  # the supervisor went away: the daemon goes on regardless
        return True

    def tick(self) -> None:
        """After each tick: the first says the daemon is ready, every one feeds the watchdog."""
        if not self.ready:
            self.ready = self.send("READY=1\nSTATUS=polling the CRM")
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
