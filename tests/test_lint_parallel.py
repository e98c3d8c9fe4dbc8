"""Lint of large inputs runs in one process per core; it must say exactly what one
process says: positions in cut streams, duplicate ids and loops across pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmflow.commands import lint
from crmflow.config import Config
from crmflow.rules.yamlload import load_text, split_stream
from tests.test_hostile_yaml import WORKFLOW

# Mistakes spread over the stream: a field typo, a schema error, a duplicate id far from
# its first use, and two workflows that update what each other triggers on.
ODD = {
    5: WORKFLOW.replace("stage: {{changed_to", "stgae: {{changed_to"),
    900: WORKFLOW.replace("on: updated", "on: updatd"),
    4000: WORKFLOW.replace("id: w{n}", "id: w7"),
    1200: "id: ping\nentity: deal\ntrigger: {{on: updated, fields: [name]}}\n"
    "actions: [{{update: {{values: {{amount: 1}}}}}}]\n# {n}\n",
    5100: "id: pong\nentity: deal\ntrigger: {{on: updated, fields: [amount]}}\n"
    "actions: [{{update: {{values: {{name: x}}}}}}]\n# {n}\n",
}


def _stream(count: int) -> str:
    return "---\n".join(ODD.get(n, WORKFLOW).format(n=n) for n in range(count))


@pytest.fixture
def big(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "big.yaml").write_text(_stream(6000))
    (folder / "small.yaml").write_text(WORKFLOW.format(n="small").replace("w{n}", "w3"))
    (folder / "other.yaml").write_text(WORKFLOW.format(n=9).replace("id: w9", "id: w5100"))
    return folder


def test_many_processes_say_what_one_says(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config()
    assert lint._workers(lint._files([big])) >= 1
    monkeypatch.setattr(lint, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(lint, "_workers", lambda files: 3)
    parallel = lint.lint_paths([big], config)
    monkeypatch.setattr(lint, "_workers", lambda files: 1)
    serial = lint.lint_paths([big], config)
    lines = [f.line() for f in parallel.findings]
    assert lines == [f.line() for f in serial.findings]
    assert (parallel.files, parallel.workflows) == (serial.files, serial.workflows) == (3, 6002)
    codes = [line.split()[1] for line in lines]
    assert sorted(set(codes)) == ["CF104", "CF201", "CF203", "CF218"], lines
    assert codes.count("CF218") == 2


def test_a_cut_stream_keeps_every_position() -> None:
    text = _stream(300)
    whole = {d.data["id"]: d.locate(("conditions",)) for d in load_text(text, "f")}
    pieces = split_stream(text, 4)
    assert len(pieces) == 4
    assert "".join(chunk for _, chunk in pieces) == text
    cut = {
        d.data["id"]: d.locate(("conditions",))
        for line, chunk in pieces
        for d in load_text(chunk, "f", line)
    }
    assert cut == whole


def test_a_stream_with_directives_is_not_cut() -> None:
    text = "%YAML 1.2\n---\na: 1\n---\nb: 2\n"
    assert split_stream(text, 2) == [(1, text)]
