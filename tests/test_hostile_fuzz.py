"""Random input to lint's whole pipeline: findings come out, never an exception.

`crmflow lint` ends in exit 70 only when something raises that is not a CrmflowError;
the loader, the schema and the semantic checks are fed random bytes and random
YAML-shaped text (fragments of real workflows shuffled) in process, where Hypothesis can
shrink a failure to its smallest form.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmflow.commands.lint import lint_paths
from crmflow.config import Config

FRAGMENTS = [
    "id: w\n",
    "entity: deal\n",
    "entity: nope\n",
    "trigger: {on: updated}\n",
    "trigger: {date: expected_close_date, offset: -7d}\n",
    "trigger: {schedule: '0 8 * * *'}\n",
    "conditions:\n",
    "  amount: {gt: 5}\n",
    "  stage: {changed_to: won}\n",
    "  name: {matches: '(a+)+$'}\n",
    "  - any: [{a: 1}]\n",
    "actions:\n",
    "  - warn: {message: '{{ deal.name }}'}\n",
    "  - webhook: {url: 'http://x/{{ deal.id'}\n",
    "  - create: {entity: task, values: {title: x}}\n",
    "    delay: 3d\n",
    "---\n",
    "&a [*a]\n",
    "x: *b\n",
    "!!python/object:os.system\n",
    "'\\x00'\n",
    "- [[[[[\n",
    "99999999999999999999999999999999999999\n",
    "{ ",
    "}\n",
    ": :\n",
    "\t\n",
    "\ufeff",
]


def lint_text(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.yaml"
        path.write_bytes(data)
        report = lint_paths([path], Config())
    assert report.files == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_are_findings(data: bytes) -> None:
    lint_text(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_shuffled_workflow_fragments_are_findings(pieces: list[str]) -> None:
    lint_text("".join(pieces).encode("utf-8", "surrogatepass"))
