"""crmflow.yaml: where the CRM, the state and the workflows are, and how to reach out.

Relative paths are relative to the file. Secrets never stand in the file: `${NAME}` in a
value is replaced from the environment, and `*_env` keys name environment variables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from crmflow import durations
from crmflow.entities import EntityModel, builtin_model
from crmflow.errors import ConfigError, Location
from crmflow.timeutil import zone

CONFIG_NAME = "crmflow.yaml"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Config:
    path: Path | None = None
    base: Path = field(default_factory=Path.cwd)
    crm: str | None = None
    state: str | None = None
    rules: list[Path] = field(default_factory=list)
    timezone_name: str = "UTC"
    timezone: tzinfo = field(default_factory=lambda: zone("UTC"))
    raw: dict[str, Any] = field(default_factory=dict)
    _model: EntityModel | None = None

    @property
    def model(self) -> EntityModel:
        if self._model is None:
            overrides = self.raw.get("entities") or {}
            try:
                self._model = (
                    builtin_model().with_overrides(overrides) if overrides else builtin_model()
                )
            except (ValueError, KeyError) as exc:
                raise ConfigError(str(exc), Location(str(self.path or CONFIG_NAME))) from None
        return self._model

    @property
    def state_url(self) -> str:
        """crmflow's own database: `state`, or .crmflow/state.db beside the configuration."""
        if self.state:
            return self.state
        return f"sqlite:///{(self.base / '.crmflow' / 'state.db').as_posix()}"

    def duration(self, key: str, default: str) -> durations.Duration:
        return durations.parse(self.raw.get(key, default))


def substitute_env(value: Any, where: str = "") -> Any:
    """`${NAME}` in strings replaced from the environment; a missing variable is an error."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_RE.sub(replace, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _resolve_url(url: str, base: Path) -> str:
    """A relative SQLite path in a URL made relative to the config file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str((base / rest).resolve())
    return url


def load_config(path: Path | None = None, *, required: bool = False) -> Config:
    """The configuration at `path`, or ./crmflow.yaml if there is one, or defaults."""
    from crmflow.validcache import default_cache
    from crmflow.yamlload import load_file

    if path is None:
        if not Path(CONFIG_NAME).is_file():
            if required:
                raise ConfigError(f"no {CONFIG_NAME} here; run `crmflow init` or pass --config")
            return Config(rules=[Path("rules")])
        path = Path(CONFIG_NAME)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    docs = load_file(path)
    if not docs:
        return Config(path=path, base=path.parent.resolve(), rules=[path.parent / "rules"])
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise ConfigError("crmflow.yaml must be a mapping", doc.locate(), "CF003")
    cache = default_cache()
    key = cache.key("config", doc.data)
    if not cache.known(key):
        from crmflow.validate import config_validator, schema_findings

        findings = schema_findings(doc, config_validator(), workflow="")
        if findings:
            first = findings[0]
            raise ConfigError(first.message, first.location, first.code)
        cache.remember(key)
    raw = substitute_env(doc.data)
    base = path.parent.resolve()
    rules = raw.get("rules", "rules/")
    rule_paths = [path.parent / r for r in ([rules] if isinstance(rules, str) else rules)]
    tz_name = raw.get("timezone", "UTC")
    try:
        tz = zone(tz_name)
    except ValueError as exc:
        raise ConfigError(str(exc), doc.locate(("timezone",)), "CF210") from None
    for key in ("poll_interval", "overlap", "delete_scan_interval", "history_retention"):
        if key in raw:
            try:
                durations.parse(raw[key])
            except ValueError as exc:
                raise ConfigError(str(exc), doc.locate((key,)), "CF208") from None
    return Config(
        path=path,
        base=base,
        crm=_resolve_url(raw["crm"], base) if raw.get("crm") else None,
        state=_resolve_url(raw["state"], base) if raw.get("state") else None,
        rules=rule_paths,
        timezone_name=tz_name,
        timezone=tz,
        raw=raw,
    )
