"""Remembering documents that already passed the schema, so a run can skip validating them.

`crmflow eval` runs often (once per event in some shells and CI jobs). A document whose
content, together with the exact schema, was validated before is valid now, so its
fingerprint is kept in the user's cache folder. Only successes are remembered; anything
new or changed is validated in full. CRMFLOW_CACHE_DIR moves the folder; an empty value
turns the cache off.

The fingerprints live in one file, a line each, read once per process into a set: with
one empty file per fingerprint, a rules folder of 12,000 workflows cost 12,000 file
creations on the first run and 12,000 stat calls on every later one. Lines are appended
with single writes to a file opened for appending, so processes sharing the folder do
not interleave them; a line that is not a whole fingerprint is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import weakref
from functools import cache
from pathlib import Path
from typing import Any

from crmflow.rules.schema import PUBLISHED

_MAX_ENTRIES = 20000
_FILE = "valid-documents"
_KEY = re.compile(r"[0-9a-f]{40}")


@cache
def _schema_fingerprint(name: str) -> bytes:
    # Only the named schema: fingerprinting crmflow.yaml's must not build the workflow
    # schema, which imports the whole workflow language.
    schema = json.dumps(PUBLISHED[name](), sort_keys=True).encode()
    return hashlib.blake2b(schema, digest_size=32).digest()


class ValidationCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._known: set[str] | None = None
        self._appender: _Appender | None = None

    def key(self, schema: str, data: Any) -> str:
        # repr() of loaded YAML (dicts, lists, str, int, float, bool, None) names its type
        # and content unambiguously, and costs half of a sorted json.dumps. Key order
        # changes the key but never validity, so at worst a reordered file is checked again.
        text = repr(data).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=20, key=_schema_fingerprint(schema)).hexdigest()

    def known(self, key: str) -> bool:
        if self.directory is None:
            return False
        if self._known is None:
            self._known = self._read()
        return key in self._known

    def remember(self, key: str) -> None:
        if self.directory is None:
            return
        if self._known is None:
            self._known = self._read()
        if key in self._known:
            return
        self._known.add(key)
        try:
            if self._appender is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._appender = _Appender(self.directory / _FILE)
                # Whatever is still buffered is written when the cache goes, at exit at the latest.
                weakref.finalize(self, self._appender.close)
            self._appender.add(key)
        except OSError:
            self.directory = None  # a read-only home: run without the cache

    def _read(self) -> set[str]:
        assert self.directory is not None
        try:
            lines = (self.directory / _FILE).read_text(encoding="ascii", errors="replace")
        except OSError:
            return set()
        keys = [line for line in lines.split("\n") if _KEY.fullmatch(line)]
        if len(keys) > 2 * _MAX_ENTRIES:
            keys = keys[-_MAX_ENTRIES:]
            self._rewrite(keys)
        return set(keys)

    def _rewrite(self, keys: list[str]) -> None:
        """Keep only the newest entries: written aside, then moved over the old file."""
        assert self.directory is not None
        temporary = self.directory / f"{_FILE}.{os.getpid()}"
        try:
            temporary.write_text("".join(f"{k}\n" for k in keys), encoding="ascii")
            os.replace(temporary, self.directory / _FILE)
        except OSError:
            temporary.unlink(missing_ok=True)


class _Appender:
    """Appends lines to a file in batches, each batch one write: a write per line cost
    more than validating the document it remembers."""

    BATCH = 512

    def __init__(self, path: Path) -> None:
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pending: list[str] = []

    def add(self, line: str) -> None:
        self.pending.append(f"{line}\n")
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.fd is not None:
            data, self.pending = "".join(self.pending).encode(), []
            # On a full disk the entries are lost, which only costs a later validation.
            with contextlib.suppress(OSError):
                os.write(self.fd, data)

    def close(self) -> None:
        self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@cache
def default_cache() -> ValidationCache:
    configured = os.environ.get("CRMFLOW_CACHE_DIR")
    if configured is not None:
        return ValidationCache(Path(configured) if configured else None)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return ValidationCache(Path(base) / "crmflow" / "valid")
