"""The validation cache skips jsonschema only for documents it has seen pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crmflow.config import Config
from crmflow.errors import WorkflowError
from crmflow.rules.ruleset import load_ruleset
from crmflow.rules.validcache import ValidationCache

GOOD = "id: w\nentity: deal\ntrigger: {on: created}\nactions: [{warn: x}]\n"


def test_keys_depend_on_content_and_schema(tmp_path: Path) -> None:
    cache = ValidationCache(tmp_path)
    a = cache.key("workflow", {"id": "a"})
    assert a == cache.key("workflow", {"id": "a"})
    assert a != cache.key("workflow", {"id": "b"})
    assert a != cache.key("config", {"id": "a"})
    assert not cache.known(a)
    cache.remember(a)
    assert cache.known(a)


def test_a_cached_valid_file_changed_to_invalid_is_caught(
    rules_dir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crmflow.rules import validcache

    monkeypatch.setattr(validcache, "default_cache", lambda: ValidationCache(tmp_path / "c"))
    folder = rules_dir({"w.yaml": GOOD})
    load_ruleset([folder], Config())
    assert len(list((tmp_path / "c").iterdir())) == 1
    (folder / "w.yaml").write_text(GOOD.replace("{on: created}", "{on: craeted}"))
    with pytest.raises(WorkflowError, match="'craeted' is not one of"):
        load_ruleset([folder], Config())
    assert len(list((tmp_path / "c").iterdir())) == 1  # failures are never remembered


def test_an_unwritable_cache_folder_is_ignored(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ValidationCache(blocker / "sub")
    cache.remember("k")
    assert not cache.known("k")
