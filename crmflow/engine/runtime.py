"""The wired engine: CRM → services → executor → evaluator, for `crmflow eval` and the daemon.

A dry run reads the CRM through a connection that cannot write and has no state and no
executor: its plans say what would happen and nothing acts. Heavy parts (SQLAlchemy
engines) are imported only when the configuration asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crmflow.config import Config
from crmflow.engine.evaluate import Evaluator
from crmflow.engine.events import Event
from crmflow.rules.ruleset import RuleSet
from crmflow.rules.workflow import Workflow
from crmflow.timeutil import Clock

if TYPE_CHECKING:
    from crmflow.crm.database import CRM
    from crmflow.engine.effects.base import Services
    from crmflow.engine.execute import Executor
    from crmflow.state.store import State

Gate = Callable[[Workflow, Event], str | None]


@dataclass
class Runtime:
    """What evaluating and acting need, wired together; `evaluator(rules)` builds on it."""

    config: Config
    crm: CRM | None = None
    state: State | None = None
    services: Services | None = None
    executor: Executor | None = None
    seed: int | None = None
    explain: bool = False
    gate: Gate | None = field(default=None, repr=False)

    def evaluator(self, rules: RuleSet) -> Evaluator:
        """An evaluator of `rules` over this runtime (built anew when workflows reload)."""
        cooldowns = None
        if self.state is not None:
            from crmflow.state.store import StoredCooldowns

            cooldowns = StoredCooldowns(self.state)
        return Evaluator(
            rules,
            self.config.timezone,
            seed=self.seed,
            explain=self.explain,
            related=self.crm.related if self.crm is not None else None,
            performer=self.executor,
            cooldowns=cooldowns,
            gate=self.gate,
        )

    def dispose(self) -> None:
        """Close the CRM's and the state's connections."""
        for resource in (self.crm, self.state):
            if resource is not None:
                resource.dispose()


def build_runtime(
    config: Config,
    *,
    dry_run: bool,
    clock: Clock | None = None,
    services: Services | None = None,
    sleep: Callable[[float], None] | None = None,
    inline_retries: bool = True,
    paused: Callable[[], bool] | None = None,
    seed: int | None = None,
    explain: bool = False,
    gate: Gate | None = None,
    shadow: bool = False,
) -> Runtime:
    """Connect to the CRM (if configured) and, unless `dry_run`, the state and the executor.

    `shadow` (`run --shadow`): the CRM is opened read-only, actions only say what they
    would do, and the state is the shadow run's own (see crmflow.engine.shadow).

    `clock` reaches the CRM, the state and new services (each keeps its own default when
    None); `services` replaces how actions reach the world (its `crm` is set here).
    """
    if not dry_run:
        config.require_secrets()
    runtime = Runtime(config, seed=seed, explain=explain, gate=gate)
    timed = {} if clock is None else {"clock": clock}
    if config.crm is not None:
        from crmflow.crm.database import CRM

        # A dry run reads related records too, through a connection that cannot write.
        runtime.crm = CRM(
            config.crm,
            config.model,
            read_only=dry_run or shadow,
            timestamp_format=config.timestamp_format,
            **timed,
        )
    if dry_run:
        return runtime
    from crmflow.engine.effects.base import Services
    from crmflow.engine.execute import Executor
    from crmflow.state.store import State

    if shadow:
        from crmflow.state.shadow import ShadowState

        runtime.state = ShadowState(config.state_url, **timed)
    else:
        runtime.state = State(config.state_url, **timed)
    if services is None:
        services = Services(config, runtime.crm, **timed)
    else:
        services.crm = runtime.crm
    if sleep is not None:
        services.sleep = sleep
    runtime.services = services
    effects = None
    if shadow:
        from crmflow.engine.shadow import shadow_effects

        effects = shadow_effects()
    runtime.executor = Executor(
        services,
        runtime.state,
        inline_retries=inline_retries,
        paused=paused if paused is not None else lambda: False,
        effects=effects,
    )
    return runtime
