"""The registry and the committed schemas agree; examples validate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from crmflow.rules.registry import ACTIONS, OPERATORS, TRIGGERS
from crmflow.rules.schema import dump, schemas, vocabulary, workflow_schema
from crmflow.rules.yamlload import iter_yaml_files, load_file
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["workflow", "config", "test"])
def test_committed_schemas_match_the_registry(name: str) -> None:
    committed = (ROOT / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")
    assert committed == dump(schemas()[name]), (
        f"schemas/{name}.schema.json is stale: run `make schemas` and commit it"
    )


def test_schemas_are_valid_2020_12() -> None:
    for schema in schemas().values():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_every_registered_name_is_in_the_schema() -> None:
    vocabulary()
    defs = workflow_schema()["$defs"]
    assert set(defs["operators"]["properties"]) == set(OPERATORS.names())
    from crmflow.rules.actions import COMMON_KEYS

    action_keys = set(defs["action"]["properties"]) - set(COMMON_KEYS)
    assert action_keys == set(ACTIONS.names())
    assert [b["required"][0] for b in defs["trigger"]["oneOf"]] == TRIGGERS.names()


def test_spec_names_are_all_registered() -> None:
    vocabulary()
    assert set(OPERATORS.names()) >= {
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "not_in",
        "contains",
        "matches",
        "empty",
        "changed",
        "changed_from",
        "changed_to",
        "before",
        "after",
    }
    assert set(ACTIONS.names()) >= {
        "notify",
        "email",
        "create",
        "update",
        "set_stage",
        "webhook",
        "delete",
        "generate_code",
        "warn",
        "wait",
    }


def test_every_action_and_operator_documents_itself() -> None:
    vocabulary()
    for name, action in ACTIONS.items():
        assert action.doc, name
    for name, operator in OPERATORS.items():
        assert operator.doc, name
    for name, definition in workflow_schema()["$defs"]["action"]["properties"].items():
        if name in ACTIONS:
            assert definition.get("description"), name


def test_cli_prints_the_workflow_schema(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("schema")
    assert result.code == 0
    assert json.loads(result.out) == workflow_schema()
    assert json.loads(cli("schema", "config").out)["title"].startswith("crmflow configuration")


def test_example_workflows_validate_against_the_committed_schema() -> None:
    validator = Draft202012Validator(
        json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
    )
    files = list(iter_yaml_files([ROOT / "rules"]))
    assert len(files) >= 15
    for file in files:
        for doc in load_file(file):
            errors = list(validator.iter_errors(doc.data))
            assert not errors, f"{file}: {errors[0].message}"


def test_readme_yaml_examples_validate() -> None:
    """Every ```yaml block in the README that has an `id:` is a valid workflow."""
    from crmflow.rules.validate import schema_findings
    from crmflow.rules.yamlload import load_text

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if re.search(r"^id:", b, re.M)
    ]
    assert blocks
    for block in blocks:
        for doc in load_text(block, "README.md"):
            assert not schema_findings(doc), block


def test_example_rules_each_have_a_test_file() -> None:
    rules = ROOT / "rules"
    for file in iter_yaml_files([rules]):
        assert Path(str(file).replace(".yaml", ".test.yaml")).exists(), file


def test_every_action_but_wait_has_an_effect() -> None:
    from crmflow.engine.effects.by_type import EFFECTS

    assert set(EFFECTS) == set(ACTIONS.names()) - {"wait"}
