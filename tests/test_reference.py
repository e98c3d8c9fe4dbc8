"""docs/reference.md is generated from the registry and the entity model, and its examples hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from crmflow import durations
from crmflow.config import Config
from crmflow.rules import reference
from crmflow.rules.actions import COMMON_KEYS
from crmflow.rules.entities import builtin_model
from crmflow.rules.registry import ACTIONS, OPERATORS, TRIGGERS
from crmflow.rules.ruleset import check, load_documents
from crmflow.rules.schema import vocabulary, workflow_schema
from crmflow.rules.templates import CONTEXT_NAMES
from crmflow.rules.yamlload import load_text
from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "reference.md"
EXAMPLES = sorted(reference.examples().items())


def test_committed_reference_matches_the_registry() -> None:
    committed = REFERENCE.read_text(encoding="utf-8")
    assert committed == reference.render(), "docs/reference.md is stale: run `make docs`"


def test_every_registered_name_has_a_section_and_an_example() -> None:
    vocabulary()
    generated = reference.render()
    for section, registry in (("trigger", TRIGGERS), ("operator", OPERATORS), ("action", ACTIONS)):
        for name in registry:
            assert f"\n### `{name}`\n" in generated, (section, name)
            assert (section, name) in reference.EXAMPLES, f"no example for {section} {name}"
    named = {(s, n) for s, r in (("trigger", TRIGGERS), ("operator", OPERATORS)) for n in r}
    named |= {("action", n) for n in ACTIONS}
    assert set(reference.EXAMPLES) == named, "an example for something not registered"


def test_every_entity_and_field_appears() -> None:
    generated = reference.render()
    model = builtin_model()
    for name in model.names():
        entity = model.get(name)
        assert entity is not None
        block = generated.split(f"\n### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        assert f"Table `{entity.table}`" in block
        for field, kind in entity.fields.items():
            assert f"| `{field}` | {kind} |" in block, (name, field)
        for relation in entity.relations:
            assert f"| `{relation}` | " in block, (name, relation)
        if entity.pipeline is not None:
            for stage in entity.pipeline.all_stages:
                assert f"`{stage}`" in block.split("\n\n", 1)[0], (name, stage)


def test_every_key_has_a_description() -> None:
    vocabulary()
    for name, definition in TRIGGERS.items():
        for key, fragment in definition.properties.items():
            assert fragment.get("description"), ("trigger", name, key)
    for name, definition in ACTIONS.items():
        branch = reference._object_branch(definition.schema)
        for key, fragment in (branch or {}).get("properties", {}).items():
            described = fragment.get("description") or reference.NOTES.get(("action", name, key))
            assert described, f"action {name}.{key}: describe it in the registry"


def _keys(section: str, item: str) -> dict[str, object]:
    if section == "workflow":
        return workflow_schema()["properties"]
    if section == "common":
        return COMMON_KEYS
    if section == "trigger":
        return TRIGGERS[item].properties
    branch = reference._object_branch(ACTIONS[item].schema)
    return branch["properties"] if branch else {}


@pytest.mark.parametrize("table", ["DEFAULTS", "NOTES"])
def test_defaults_and_notes_name_real_keys(table: str) -> None:
    vocabulary()
    for section, item, key in getattr(reference, table):
        keys = _keys(section, item)
        assert key in keys, f"reference.{table} names {section} {item} {key}, which is gone"
        if table == "NOTES":
            assert not keys[key].get("description"), (  # type: ignore[attr-defined]
                f"reference.NOTES[{section}, {item}, {key}]: the schema describes it now"
            )


def test_template_names_are_all_described() -> None:
    assert list(reference.CONTEXT) == list(CONTEXT_NAMES)


def test_duration_forms_parse() -> None:
    for forms, _means in reference.DURATION_FORMS:
        for form in forms.replace("`", "").split(", "):
            durations.parse(form, signed=form[0] in "+-")


@pytest.fixture(scope="module")
def committed_workflow_schema() -> Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


@pytest.mark.parametrize("key,text", EXAMPLES, ids=[f"{s}-{n}" for (s, n), _ in EXAMPLES])
def test_example_is_valid(
    key: tuple[str, str],
    text: str,
    committed_workflow_schema: Draft202012Validator,
    tmp_path: Path,
) -> None:
    # crmflow's loader, not yaml.safe_load: YAML 1.1 would read the key `on` as true.
    data = load_text(text, "example.yaml")[0].data
    errors = [e.message for e in committed_workflow_schema.iter_errors(data)]
    assert not errors, errors
    (tmp_path / f"{data['id']}.yaml").write_text(text, encoding="utf-8")
    for action in data["actions"]:
        if isinstance(action.get("document"), dict):  # the template file beside it
            template = tmp_path / action["document"]["template"]
            template.parent.mkdir(parents=True, exist_ok=True)
            template.write_text("Welcome, {{ contract.name }}.\n", encoding="utf-8")
    findings = check(load_documents([tmp_path]), Config(), full=True)
    assert [f.line() for f in findings] == [], "lint --strict would fail this example"


def test_example_ids_are_unique() -> None:
    ids = [load_text(text, "example.yaml")[0].data["id"] for _key, text in EXAMPLES]
    assert len(ids) == len(set(ids))
