"""Remembering documents that already passed the schema, so a run can skip jsonschema.

`crmflow eval` runs often (once per event in some shells and CI jobs), and loading and
running jsonschema is most of its start-up. A document whose canonical JSON, together
with the exact schema, was validated before is valid now, so its fingerprint is kept as
an empty file in the user's cache folder. Only successes are remembered; anything new or
changed is validated in full. CRMFLOW_CACHE_DIR moves the folder; an empty value turns
the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from crmflow.rules.schema import PUBLISHED

_MAX_ENTRIES = 20000


@cache
def _schema_fingerprint(name: str) -> bytes:
    # Only the named schema: fingerprinting crmflow.yaml's must not build the workflow
    # schema, which imports the whole workflow language.
    return hashlib.sha256(json.dumps(PUBLISHED[name](), sort_keys=True).encode()).digest()


class ValidationCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def key(self, schema: str, data: Any) -> str:
        digest = hashlib.sha256(_schema_fingerprint(schema))
        digest.update(json.dumps(data, sort_keys=True, default=repr).encode())
        return digest.hexdigest()[:40]

    def known(self, key: str) -> bool:
        return self.directory is not None and (self.directory / key).exists()

    def remember(self, key: str) -> None:
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / key).touch()
        except OSError:
            self.directory = None  # a read-only home: run without the cache
            return
        if hash(key) % 1000 == 0:
            self._prune()

    def _prune(self) -> None:
        assert self.directory is not None
        entries = sorted(self.directory.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - _MAX_ENTRIES)]:
            old.unlink(missing_ok=True)


@cache
def default_cache() -> ValidationCache:
    configured = os.environ.get("CRMFLOW_CACHE_DIR")
    if configured is not None:
        return ValidationCache(Path(configured) if configured else None)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return ValidationCache(Path(base) / "crmflow" / "valid")
