"""crmflow.yaml: where the CRM, the state and the workflows are, and how to reach out.

Relative paths are relative to the file. Secrets never stand in the file: `${NAME}` in a
value is replaced from the environment, and `*_env` keys name environment variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from crmflow import durations
from crmflow.durations import Duration
from crmflow.errors import ConfigError, ConfigErrors, Location, format_path
from crmflow.rules.entities import EntityModel, builtin_model
from crmflow.timeutil import zone

CONFIG_NAME = "crmflow.yaml"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Section:
    """One mapping of crmflow.yaml read into settings; a bad value names its place in the file.

    The schema has checked every key's type before, so only what it cannot decide is
    checked here: durations, which durations.parse() accepts or not (its pattern in the
    schema only guides editors).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None,
        path: tuple[str, ...] = (),
        locate: Callable[[tuple[str, ...]], Location] | None = None,
        problems: list[ConfigError] | None = None,
    ) -> None:
        self.data: Mapping[str, Any] = data or {}
        self.path = path
        self.locate = locate
        # Where mistakes are collected, so a file's are reported together; None: raise.
        self.problems = problems

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def duration(self, key: str, default: str) -> Duration:
        value = self.data.get(key, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # A bare number is seconds (`poll_interval: 2`), as people write it.
            value = f"{value}s" if float(value).is_integer() else f"{round(value * 1000)}ms"
        try:
            return durations.parse(value)
        except ValueError as exc:
            where = self.locate((*self.path, key)) if self.locate else Location(CONFIG_NAME)
            error = ConfigError(str(exc), where, "CF208")
            if self.problems is None:
                raise error from None
            self.problems.append(error)
            return durations.parse(default)

    def section(self, key: str) -> _Section:
        return _Section(self.data.get(key), (*self.path, key), self.locate, self.problems)


# The typed sections of crmflow.yaml, parsed once by load_config. Each states its defaults
# once, in `read`: a Config built in code reads an empty mapping, so it gets the defaults
# of a file without the keys.


@dataclass(frozen=True)
class DaemonSettings:
    """How `crmflow run` polls, keeps history and claims due actions (top-level keys)."""

    poll_interval: Duration
    overlap: Duration
    delete_scan_interval: Duration
    reconcile_interval: Duration
    change_capture: str
    history_retention: Duration
    chain_depth: int
    lease: Duration

    @classmethod
    def read(cls, top: _Section) -> DaemonSettings:
        return cls(
            poll_interval=top.duration("poll_interval", "2s"),
            # Wide enough for application servers whose clocks run minutes behind: re-read
            # rows are recognised by their version, so width costs reads, not repeats.
            overlap=top.duration("overlap", "5m"),
            delete_scan_interval=top.duration("delete_scan_interval", "60s"),
            reconcile_interval=top.duration("reconcile_interval", "1h"),
            change_capture=top.get("change_capture", "polling"),
            history_retention=top.duration("history_retention", "90d"),
            chain_depth=int(top.get("chain_depth", 5)),
            lease=top.duration("lease", "5m"),
        )


@dataclass(frozen=True)
class ActionSettings:
    """How many actions that wait on another host the daemon carries out at once
    (`actions:`): in all, and per host."""

    concurrency: int
    per_host: int

    @classmethod
    def read(cls, section: _Section) -> ActionSettings:
        return cls(
            # Against a receiver answering in 50 ms, 16 at a time to one host is some 300
            # actions/s; half the slots, so one host that hangs leaves the other half free.
            concurrency=int(section.get("concurrency", 32)),
            per_host=int(section.get("per_host", 16)),
        )


@dataclass(frozen=True)
class RetrySettings:
    """When a failed action is tried again (`retry:`)."""

    max_attempts: int
    base_delay: Duration
    max_delay: Duration
    max_age: Duration

    @classmethod
    def read(cls, section: _Section) -> RetrySettings:
        return cls(
            max_attempts=int(section.get("max_attempts", 5)),
            base_delay=section.duration("base_delay", "1s"),
            max_delay=section.duration("max_delay", "5m"),
            max_age=section.duration("max_age", "1h"),
        )


@dataclass(frozen=True)
class EmailSettings:
    """How e-mail goes out (`email:`); without the section, into the maildir mail/."""

    transport: str
    path: str
    host: str | None
    port: int | None  # None: 465 with `ssl`, else 25 (see smtp_port)
    sender: str  # `from`
    username: str | None
    password_env: str | None
    starttls: bool
    ssl: bool
    ca_file: str | None
    timeout: Duration
    redirect_to: str | None
    per_minute: int | None

    @property
    def smtp_port(self) -> int:
        return self.port or (465 if self.ssl else 25)

    @classmethod
    def read(cls, section: _Section) -> EmailSettings:
        return cls(
            transport=section.get("transport", "maildir"),
            path=section.get("path", "mail/"),
            host=section.get("host"),
            port=section.get("port"),
            sender=section.get("from", "crmflow@localhost"),
            username=section.get("username"),
            password_env=section.get("password_env"),
            starttls=bool(section.get("starttls")),
            ssl=bool(section.get("ssl")),
            ca_file=section.get("ca_file"),
            timeout=section.duration("timeout", "30s"),
            redirect_to=section.get("redirect_to"),
            per_minute=section.get("per_minute"),
        )


@dataclass(frozen=True)
class WebhookSettings:
    """Which hosts webhooks may reach, how they are signed and limited (`webhooks:`)."""

    allow: tuple[str, ...]
    secret_env: str | None
    timeout: Duration
    per_host_per_minute: int | None
    # The proxy every webhook goes through, or None. It may hold a password from the
    # environment, so it stays out of the repr (and every message shows it masked).
    proxy: str | None = field(default=None, repr=False)

    @classmethod
    def read(cls, section: _Section) -> WebhookSettings:
        return cls(
            allow=tuple(section.get("allow") or ()),
            secret_env=section.get("secret_env"),
            timeout=section.duration("timeout", "10s"),
            per_host_per_minute=section.get("per_host_per_minute"),
            proxy=cls._proxy(section),
        )

    @staticmethod
    def _proxy(section: _Section) -> str | None:
        """`proxy`, checked here rather than by a schema pattern: the schema's message would
        repeat the value, and with it the password."""
        from crmflow.urls import proxy_url

        value = section.get("proxy")
        if not value:
            return None
        try:
            return proxy_url(value)
        except ValueError as exc:
            key = (*section.path, "proxy")
            where = section.locate(key) if section.locate else Location(CONFIG_NAME)
            error = ConfigError(f"webhooks.proxy: {exc}", where, "CF104")
            if section.problems is None:
                raise error from None
            section.problems.append(error)
            return None


@dataclass(frozen=True)
class SmsSettings:
    """Where text messages go (`sms:`): an HTTP gateway, its token from the environment,
    and the request body as a mapping of templates (`to`, `text`, `from`, `key`)."""

    gateway: str | None
    token_env: str | None
    sender: str | None  # `from`
    body: dict[str, Any] | None  # None: {"from", "to", "text", "reference"}
    format: str  # json or form
    timeout: Duration

    @classmethod
    def read(cls, section: _Section) -> SmsSettings:
        return cls(
            gateway=section.get("gateway"),
            token_env=section.get("token_env"),
            sender=section.get("from"),
            body=section.get("body"),
            format=section.get("format", "json"),
            timeout=section.duration("timeout", "10s"),
        )


# SQLite creates a database file on first connect: a misspelt path would become an empty
# CRM in which nothing ever changes, so every command refuses a CRM file that is not there.
MISSING_CRM_FILE = (
    "the file does not exist (a path in crm: is relative to crmflow.yaml; "
    "`crmflow init` makes a demo CRM)"
)


def sqlite_file(url: str) -> Path | None:
    """The file a `sqlite:///PATH` URL names; None for other databases and in-memory ones."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


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
    daemon: DaemonSettings = field(default_factory=lambda: DaemonSettings.read(_Section({})))
    retry: RetrySettings = field(default_factory=lambda: RetrySettings.read(_Section({})))
    email: EmailSettings = field(default_factory=lambda: EmailSettings.read(_Section({})))
    webhooks: WebhookSettings = field(default_factory=lambda: WebhookSettings.read(_Section({})))
    sms: SmsSettings = field(default_factory=lambda: SmsSettings.read(_Section({})))
    actions: ActionSettings = field(default_factory=lambda: ActionSettings.read(_Section({})))
    # How the CRM writes text timestamps (strftime, UTC); None: ISO 8601 with Z.
    timestamp_format: str | None = None
    # The CRM's user roles, when the file lists them (lint checks role:NAME against them).
    roles: tuple[str, ...] | None = None
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

    def require_secrets(self) -> None:
        """The secrets this configuration names must be in the environment.

        Checked before anything is carried out: a webhook without its signature is
        refused by a Standard Webhooks receiver, and an SMTP login without its password
        fails every e-mail, so either is a configuration error at start, not a surprise
        at the first send.
        """
        named = [
            ("webhooks.secret_env", self.webhooks.secret_env),
            ("sms.token_env", self.sms.token_env),
        ]
        if self.email.transport == "smtp":
            named.append(("email.password_env", self.email.password_env))
        for key, variable in named:
            if variable and not os.environ.get(variable):
                raise ConfigError(
                    f"{key}: the environment variable {variable} is not set (or empty); "
                    "set it, or remove the key"
                )

    def check_crm_file(self) -> None:
        """ConfigError when `crm` names a SQLite file that does not exist."""
        path = sqlite_file(self.crm) if self.crm else None
        if path is not None and not path.is_file():
            raise ConfigError(f"crm: cannot open {self.crm}: {MISSING_CRM_FILE}")

    def shadow(self) -> Config:
        """This configuration for a shadow run: the same CRM and workflows, its own state
        (`shadow_state:`, else shadow.db beside the usual state database)."""
        url = self.raw.get("shadow_state")
        if not url:
            usual = self.state_url
            if not usual.startswith("sqlite:///"):
                raise ConfigError(
                    "run --shadow: the state is not SQLite; name the shadow run's own "
                    "database with shadow_state: in the configuration"
                )
            url = f"sqlite:///{(Path(usual[len('sqlite:///') :]).parent / 'shadow.db').as_posix()}"
        elif url == self.state_url:
            raise ConfigError("shadow_state: must not be the state database itself")
        return replace(self, state=_resolve_url(url, self.base))

    @property
    def state_url(self) -> str:
        """crmflow's own database: `state`; else, under systemd with a StateDirectory,
        state.db there (the configuration's folder is read-only to a hardened unit); else
        .crmflow/state.db beside the configuration."""
        if self.state:
            return self.state
        service_state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if service_state:
            return f"sqlite:///{(Path(service_state) / 'state.db').as_posix()}"
        return f"sqlite:///{(self.base / '.crmflow' / 'state.db').as_posix()}"


def substitute_env(
    value: Any,
    path: tuple[str | int, ...] = (),
    problems: list[ConfigError] | None = None,
    locate: Callable[[tuple[str, ...]], Location] | None = None,
) -> Any:
    """`${NAME}` in strings replaced from the environment; a missing variable is an error
    (raised, or collected in `problems`)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                where = format_path(path)
                error = ConfigError(
                    f"{where}: environment variable {name} is not set",
                    locate(path) if locate else None,  # type: ignore[arg-type]
                )
                if problems is None:
                    raise error
                problems.append(error)
                return ""
            return os.environ[name]

        return _ENV_RE.sub(replace, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, (*path, k), problems, locate) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, (*path, i), problems, locate) for i, v in enumerate(value)]
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
    from crmflow.rules.validcache import default_cache
    from crmflow.rules.yamlload import load_file

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
    # Every mistake is collected, so that one run names them all.
    problems: list[ConfigError] = []
    raw = substitute_env(doc.data, (), problems, doc.locate)
    unset = {e.location for e in problems}
    # The schema judges the values in use: a `${NAME}` is checked as what it stands for.
    # The cache is for files without substitutions, whose validity the text decides.
    cache = default_cache()
    key = cache.key("config", doc.data) if raw == doc.data else None
    if key is None or not cache.known(key):
        from crmflow.rules.validate import config_validator, schema_findings

        findings = schema_findings(replace(doc, data=raw), config_validator(), workflow="")
        # A value whose variable is unset has said so already.
        findings = [f for f in findings if f.location not in unset]
        problems.extend(ConfigError(f.message, f.location, f.code) for f in findings)
        if not findings and key is not None:
            cache.remember(key)
    tz_name = raw.get("timezone", "UTC")
    tz: tzinfo = UTC
    if isinstance(tz_name, str):
        try:
            tz = zone(tz_name)
        except ValueError as exc:
            problems.append(ConfigError(str(exc), doc.locate(("timezone",)), "CF210"))
    if isinstance(raw.get("calendar"), dict) and not problems:
        from crmflow.workdays import CalendarZone, calendar_from

        try:
            # The zone carries the calendar to every place that works out a due time.
            tz = CalendarZone(tz, calendar_from(raw["calendar"]))
        except ValueError as exc:
            problems.append(ConfigError(f"calendar: {exc}", doc.locate(("calendar",)), "CF104"))
    if problems:
        # Reading the settings would only repeat what these already say.
        problems.sort(key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0))
        raise ConfigErrors(problems) if len(problems) > 1 else problems[0]
    base = path.parent.resolve()
    rules = raw.get("rules", "rules/")
    rule_paths = [path.parent / r for r in ([rules] if isinstance(rules, str) else rules)]
    top = _Section(raw, (), doc.locate, problems)
    config = Config(
        path=path,
        base=base,
        crm=_resolve_url(raw["crm"], base) if raw.get("crm") else None,
        state=_resolve_url(raw["state"], base) if raw.get("state") else None,
        rules=rule_paths,
        timezone_name=tz_name,
        timezone=tz,
        raw=raw,
        daemon=DaemonSettings.read(top),
        retry=RetrySettings.read(top.section("retry")),
        email=EmailSettings.read(top.section("email")),
        webhooks=WebhookSettings.read(top.section("webhooks")),
        sms=SmsSettings.read(top.section("sms")),
        actions=ActionSettings.read(top.section("actions")),
        timestamp_format=raw.get("timestamp_format"),
        roles=tuple(raw["roles"]) if "roles" in raw else None,
    )
    if problems:
        raise ConfigErrors(problems) if len(problems) > 1 else problems[0]
    return config
