"""Reading crmflow.yaml stays cheap: it loads neither the evaluator nor Jinja.

Every command reads the configuration, `status` and `pause` included, so whatever
`load_config()` imports is start-up time for all of them. Each check runs in a fresh
interpreter, where `sys.modules` shows exactly what the call pulled in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# The workflow language and the evaluator: none of it is needed to read the configuration.
NOT_FOR_CONFIG = (
    "jinja2",
    "crmflow.engine.evaluate",
    "crmflow.rules.templates",
    "crmflow.commands.testing",
    "crmflow.engine.matcher",
)

PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from crmflow.config import load_config

    config = load_config(Path(sys.argv[1]))
    print(json.dumps({
        "modules": sorted(sys.modules),
        "max_delay": config.retry.max_delay.seconds,
    }))
    """
)


def _load_config_in_a_fresh_interpreter(path: Path, cache: Path) -> dict[str, Any]:
    env = dict(os.environ, CRMFLOW_CACHE_DIR=str(cache))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_load_config_imports_no_evaluator_and_no_jinja(tmp_path: Path, cache: str) -> None:
    config = tmp_path / "crmflow.yaml"
    config.write_text(
        "crm: sqlite:///crm.db\n"
        "timezone: Europe/Berlin\n"
        "poll_interval: 2s\n"
        "retry: {max_attempts: 3, max_delay: 2m}\n"
        "webhooks: {allow: [example.com], timeout: 5s}\n",
        encoding="utf-8",
    )
    folder = tmp_path / "cache"
    if cache == "warm":
        _load_config_in_a_fresh_interpreter(config, folder)
    loaded = _load_config_in_a_fresh_interpreter(config, folder)
    assert loaded["max_delay"] == 120
    assert not set(loaded["modules"]) & set(NOT_FOR_CONFIG)


def test_no_import_cycle_not_even_through_a_local_import() -> None:
    """Every import counts, inside functions too; only `if TYPE_CHECKING:` ones do not run."""
    import grimp

    graph = grimp.build_graph("crmflow", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    index = {name: i for i, name in enumerate(modules)}
    edges = {
        name: sorted(graph.find_modules_directly_imported_by(name) & set(modules))
        for name in modules
    }
    # Tarjan's strongly connected components: any with two or more modules is a cycle.
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        order[name] = low[name] = len(order)
        stack.append(name)
        for other in edges[name]:
            if other not in order:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], order[other])
        if low[name] == order[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                cycles.append(sorted(component, key=index.__getitem__))

    for name in modules:
        if name not in order:
            visit(name)
    assert cycles == []


def test_the_executor_loads_mail_and_web_effects_only_when_an_action_runs() -> None:
    probe = (
        "import json, sys; import crmflow.engine.execute, crmflow.commands.eval_stream; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "crmflow.engine.effects.base" in loaded
    assert not loaded & {
        "crmflow.engine.effects.by_type",
        "crmflow.engine.effects.mail",
        "crmflow.engine.effects.webhooks",
        "smtplib",
    }
