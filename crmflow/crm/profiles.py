"""Ready-made mappings of real CRMs' databases onto crmflow's entity model.

Each profile is a YAML file in crmflow/data/profiles/: a comment that says which CRM and
version it was made from and what to check, then `timestamp_format` and `entities`, ready
to paste into crmflow.yaml. Each is tested against a schema rebuilt from the CRM's own
definitions (tests/schemas/).
"""

from __future__ import annotations

from pathlib import Path

import crmflow
from crmflow.errors import ConfigError
from crmflow.rules.entities import suggest

FOLDER = Path(crmflow.__file__).resolve().parent / "data" / "profiles"


def names() -> list[str]:
    return sorted(path.stem for path in FOLDER.glob("*.yaml"))


def summary(name: str) -> str:
    """The profile's first comment line: which CRM it is for."""
    first = text(name).splitlines()[0]
    return first.lstrip("# ").strip()


def text(name: str) -> str:
    path = FOLDER / f"{name}.yaml"
    if not path.is_file():
        known = names()
        raise ConfigError(f"no profile {name!r}{suggest(name, known)}; known: {', '.join(known)}")
    return path.read_text(encoding="utf-8")
