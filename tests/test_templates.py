"""Templates: types kept for single expressions, the sandbox, and CRM data as data."""

from __future__ import annotations

from typing import Any

import pytest

from crmflow.rules.templates import (
    Record,
    Template,
    TemplateFailure,
    compile_tree,
    references,
    render_tree,
)

DEAL = {
    "id": 42,
    "name": "ACME",
    "amount": 250000,
    "tags": ["a", "b"],
    "won": None,
    "company": {"name": "ACME GmbH", "country": "DE"},
}


def render(source: str, record: dict[str, Any] | None = None) -> Any:
    record = DEAL if record is None else record
    context = {
        "record": Record(record),
        "deal": Record(record),
        "previous": None,
        "changes": Record({}),
        "actor": 7,
        "now": None,
        "rule": {"id": "r"},
        "steps": Record({"gen": {"code": "XY12"}}),
    }
    return Template(source).render(context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ deal.amount }}", 250000),
        ("{{deal.amount}}", 250000),
        ("{{ deal.tags }}", ["a", "b"]),
        ("{{ deal.won }}", None),
        ("{{ deal.missing }}", None),
        ("{{ deal.company }}", {"name": "ACME GmbH", "country": "DE"}),
        ("{{ deal.amount > 100 }}", True),
        ("{{ actor }}", 7),
        ("{{ steps.gen.code }}", "XY12"),
        ("Deal {{ deal.amount }}", "Deal 250000"),
        ("{{ deal.amount }} EUR", "250000 EUR"),
        ("{{ deal.won }}!", "!"),
        ("{{ deal.company.name }}", "ACME GmbH"),
        ("{{ deal.company.owner.name }}", None),
        ("{{ deal['name'] }}", "ACME"),
        ("{{ deal.name }}{{ deal.id }}", "ACME42"),
        ("{% if deal.amount > 5 %}big{% endif %}", "big"),
        ("{{ deal.name | upper }}", "ACME"),
    ],
)
def test_rendering(source: str, expected: Any) -> None:
    assert render(source) == expected


def test_crm_data_is_never_compiled_as_a_template() -> None:
    record = {"name": "{{ 7*7 }}", "note": "{% for x in range(10**9) %}{% endfor %}"}
    assert render("Hello {{ deal.name }}", record) == "Hello {{ 7*7 }}"
    assert render("{{ deal.name }}", record) == "{{ 7*7 }}"
    assert render("{{ deal.note }}", record) == record["note"]


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ deal.__class__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ ''.format.__globals__ }}",
        "{{ deal.tags.append('x') }}",
        "{{ range.__self__ }}",
    ],
)
def test_sandbox_refuses_known_escape_payloads(payload: str) -> None:
    with pytest.raises(TemplateFailure):
        render(payload)


def test_undefined_names_are_errors_but_missing_fields_are_null() -> None:
    with pytest.raises(TemplateFailure, match="'dael' is undefined"):
        render("{{ dael.name }}")
    assert render("{{ deal.nope }}") is None


def test_syntax_errors_are_one_line() -> None:
    with pytest.raises(TemplateFailure, match="template syntax error"):
        Template("{{ deal.name }").compile()


def test_trees_render_every_string() -> None:
    tree = compile_tree({"a": ["{{ deal.id }}", "x"], "b": {"c": "n={{ deal.name }}"}, "d": 1})
    context = {"deal": Record(DEAL)}
    assert render_tree(tree, context) == {"a": [42, "x"], "b": {"c": "n=ACME"}, "d": 1}


def test_references_for_lint() -> None:
    names, chains = references("{{ deal.company.name }} {{ steps.gen.code }} {{ x }}")
    assert names == {"deal", "steps", "x"}
    assert ("deal", "company", "name") in chains
    assert ("deal", "company") not in chains


@pytest.mark.parametrize(
    ("bomb", "reason"),
    [
        ("{{ ('x' * 1000000) * 1000 }}", "over 1,000,000"),
        ("{{ [0] * 100000000 }}", "over 1,000,000"),
        ("{{ 10 ** 100000 }}", "exponent over 1000"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "more than 100,000 steps",
        ),
        ("{{ range(1000000) | list | length }}", "more than 100,000 steps"),
        (
            "{% set s = namespace(v='x') %}{% for i in range(60) %}{% set s.v = s.v + s.v %}"
            "{% endfor %}{{ s.v }}",
            "over 1,000,000",
        ),
        # Numbers: a tower of powers under the exponent bound, and squaring in a loop,
        # which doubles the digits each step.
        ("{{ ((10 ** 1000) ** 1000) ** 1000 }}", "over 100,000 bits"),
        (
            "{% set s = namespace(v=3) %}{% for i in range(64) %}{% set s.v = s.v * s.v %}"
            "{% endfor %}{{ s.v > 0 }}",
            "over 100,000 bits",
        ),
    ],
)
def test_a_template_cannot_build_or_loop_without_bound(bomb: str, reason: str) -> None:
    with pytest.raises(TemplateFailure, match=reason):
        render(bomb)


def test_the_loop_budget_is_per_rendering() -> None:
    """Each rendering starts with the whole budget: many small loops in turn are fine."""
    template = Template("{% for i in range(60000) %}{% endfor %}done")
    assert [template.render({}) for _ in range(3)] == ["done"] * 3


def test_crm_data_over_the_size_bound_renders_literally_if_it_is_only_passed_on() -> None:
    """The bounds are on what a template builds; a long value is still itself."""
    long_name = "x" * 200_000
    assert render("{{ deal.name }}", {**DEAL, "name": long_name}) == long_name
