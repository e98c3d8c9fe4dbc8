"""What every effect is handed (a Job) and what it answers (an Outcome)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from crmflow.errors import ActionError

if TYPE_CHECKING:
    from crmflow.config import Config
    from crmflow.crm.database import CRM
    from crmflow.engine.effects.mail import Maildir, Smtp
    from crmflow.engine.effects.netguard import UrlPolicy
    from crmflow.engine.events import Event
    from crmflow.rules.workflow import Action, Workflow

Status = Literal["done", "skipped", "failed"]


@dataclass
class Outcome:
    status: Status
    detail: str
    output: dict[str, Any] | None = None
    transient: bool = False  # a failure worth retrying
    retry_after: float | None = None  # seconds the other side asked us to wait
    touched: list[tuple[str, Any]] = field(default_factory=list)  # records it changed


class Transient(Exception):
    """A failure that may pass: retried with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Services:
    """What effects reach: the CRM, mail, the web; built lazily from the configuration."""

    config: Config
    crm: CRM | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.SystemRandom)
    resolve: Callable[[str, int], list[str]] | None = None  # DNS, replaceable in tests

    @cached_property
    def mailer(self) -> Maildir | Smtp:
        from crmflow.engine.effects.mail import transport

        return transport(self.config.email, self.config.base)

    @cached_property
    def url_policy(self) -> UrlPolicy:
        from crmflow.engine.effects.netguard import UrlPolicy, default_resolve

        return UrlPolicy(self.config.webhooks.allow, self.resolve or default_resolve)

    def require_crm(self) -> CRM:
        if self.crm is None:
            raise ActionError("no CRM is configured")
        return self.crm


@dataclass
class Job:
    """One action being carried out."""

    services: Services
    workflow: Workflow
    action: Action
    event: Event
    params: dict[str, Any]
    key: str
    now: datetime

    @property
    def crm(self) -> CRM:
        return self.services.require_crm()

    @property
    def record(self) -> dict[str, Any]:
        return self.event.record

    @property
    def writer(self) -> Any:
        """Who crmflow's writes are made as: the workflow's run_as, else the actor."""
        if self.workflow.run_as is not None:
            return self.workflow.run_as
        actor = self.event.actor
        # A user's id, in the CRM's own form: a number, or a string such as a uuid. Anything
        # else (an object, a flag) names nobody, and the modified-by column stays as it was.
        if isinstance(actor, bool) or not isinstance(actor, (int, str)) or actor == "":
            return None
        return actor
