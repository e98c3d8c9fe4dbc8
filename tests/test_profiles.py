"""`crmflow profile`: the known CRMs, each mapping as printed accepted by lint as is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crmflow.crm import profiles
from tests.conftest import Result

Cli = Callable[..., Result]


def test_the_list_names_each_profile_with_its_crm(cli: Cli) -> None:
    listed = cli("profile")
    assert listed.code == 0
    lines = listed.out.splitlines()
    assert [line.split()[0] for line in lines] == ["odoo", "suitecrm", "twenty"]
    assert "SuiteCRM 7.x" in lines[1] and "Odoo 16+" in lines[0]


@pytest.mark.parametrize("name", profiles.names())
def test_a_printed_profile_is_a_configuration_lint_accepts(
    cli: Cli, tmp_path: Path, name: str
) -> None:
    printed = cli("profile", name)
    assert printed.code == 0 and printed.out == profiles.text(name)
    (tmp_path / "crm.db").touch()
    (tmp_path / "crmflow.yaml").write_text("crm: sqlite:///crm.db\n" + printed.out)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "w.yaml").write_text(
        "id: w\nentity: deal\ntrigger: {on: updated, fields: [stage]}\n"
        "actions: [{warn: {message: 'stage {{ deal.stage }}'}}]\n"
    )
    linted = cli("lint", "--strict")
    assert linted.code == 0, linted.out + linted.err


def test_an_unknown_profile_is_one_line_with_the_known_ones(cli: Cli) -> None:
    result = cli("profile", "suitcrm")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        "crmflow: no profile 'suitcrm' (did you mean 'suitecrm'?); known: odoo, suitecrm, twenty\n"
    )
