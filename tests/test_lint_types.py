"""lint: mistakes that can never match or that fail only at run time (CF212, CF220-CF223).

Operands of the wrong type for the field, stage names the pipeline lacks, notify
recipients nobody resolves, literal webhook URLs the allow list refuses, and a wait
whose on_met is left to its default. Each through the real CLI, with exact lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

Cli = Callable[..., Result]
Rules = Callable[..., Path]
HEAD = "id: w\nentity: deal\ntrigger: {on: updated}\n"
STAGES = "(stages: qualification, proposal, negotiation, won, lost)"


def lint_lines(cli: Cli, rules_dir: Rules, text: str) -> tuple[int, list[str]]:
    rules_dir({"w.yaml": text})
    result = cli("lint", "rules")
    assert "Traceback" not in result.err, result.err
    return result.code, [line for line in result.out.splitlines() if line.startswith("rules/")]


def conditions(block: str) -> str:
    return f"{HEAD}conditions: {block}\nactions: [{{warn: x}}]\n"


# (conditions, exit code, the finding lines after "rules/w.yaml:")
OPERANDS = [
    (
        "{amount: {gt: '100'}}",
        1,
        [
            '4:27: CF220 w: amount gt "100" can never hold: "100" is a string, not a number '
            '(write 100, not "100")'
        ],
    ),
    (
        "{probability: '90'}",
        1,
        [
            '4:27: CF220 w: probability eq "90" can never hold: "90" is a string, not an integer '
            '(write 90, not "90")'
        ],
    ),
    (
        "{name: {gt: 5}}",
        1,
        ['4:25: CF220 w: name gt 5 can never hold: 5 is a number, not a string (write "5", not 5)'],
    ),
    (
        "{probability: {in: [10, '20', null]}}",
        1,
        [
            '4:37: CF220 w: probability in: "20" never matches: "20" is a string, not an integer '
            '(write 20, not "20")'
        ],
    ),
    (
        "{amount: {ne: '5'}, name: {not_in: [a, 5]}}",
        0,
        [
            '4:27: CF220 warning: w: amount ne "5" always holds: "5" is a string, not a number '
            '(write 5, not "5")',
            "4:52: CF220 warning: w: name not_in: 5 never matches, so not_in holds: 5 is a "
            'number, not a string (write "5", not 5)',
        ],
    ),
    (
        "{contact.email_opt_out: 'true'}",
        1,
        [
            '4:37: CF220 w: contact.email_opt_out eq "true" can never hold: "true" is a string, '
            'not a boolean (write true, not "true")'
        ],
    ),
    (
        "{expected_close_date: {gt: 5}, last_activity_at: {changed_to: soon}}",
        1,
        [
            "4:40: CF220 w: expected_close_date gt 5 can never hold: 5 is a number, not a date "
            "(an ISO date such as 2026-01-31, or 2026-01-31T09:00:00Z)",
            '4:75: CF220 w: last_activity_at changed_to "soon" can never hold: "soon" is not an '
            "ISO date (an ISO date such as 2026-01-31, or 2026-01-31T09:00:00Z)",
        ],
    ),
    # before/after take a date or an offset, or the schema refuses them (CF104, CF103).
    (
        "{expected_close_date: {before: soon}}",
        1,
        [
            "4:44: CF104 w: conditions.expected_close_date.before: 'soon' is not valid: expected "
            "date/time earlier than an ISO date or a signed offset from now"
        ],
    ),
    (
        "{stage: {changed_to: wonn}}",
        1,
        [
            f"4:34: CF212 w: stage changed_to: deal has no stage 'wonn' {STAGES} (did you mean 'won'?)"
        ],
    ),
    (
        "{any: [{stage: wonn}, {stage: {in: [won, lostt]}}, {stage: {not_in: [x]}}]}",
        1,
        [
            f"4:28: CF212 w: stage eq: deal has no stage 'wonn' {STAGES} (did you mean 'won'?)",
            f"4:54: CF212 w: stage in: deal has no stage 'lostt' {STAGES} (did you mean 'lost'?)",
            f"4:82: CF212 w: stage not_in: deal has no stage 'x' {STAGES}",
        ],
    ),
    (
        "{stage: {changed_from: qualificaton, ne: lst}}",
        1,
        [
            "4:36: CF212 w: stage changed_from: deal has no stage 'qualificaton' "
            f"{STAGES} (did you mean 'qualification'?)",
            f"4:54: CF212 w: stage ne: deal has no stage 'lst' {STAGES} (did you mean 'lost'?)",
        ],
    ),
    # What can hold stays quiet: the right types, null, floats on integers' kin, field
    # references, stages the pipeline has, and a path through a to-many relation.
    (
        "{amount: {gt: 100.5, ne: null}, probability: {in: [10, null]}, name: {eq: null}, "
        "stage: {in: [won, lost]}, expected_close_date: {before: '2026-01-31'}, "
        "contact.email_opt_out: false, last_activity_at: {gt: '2026-01-31T09:00:00Z'}, "
        "owner_id: {eq: {field: updated_by}}, activities.kind: {eq: 5}}",
        0,
        [],
    ),
]


@pytest.mark.parametrize(("block", "code", "expected"), OPERANDS)
def test_condition_operands(
    cli: Cli, rules_dir: Rules, block: str, code: int, expected: list[str]
) -> None:
    result_code, lines = lint_lines(cli, rules_dir, conditions(block))
    assert lines == ["rules/w.yaml:" + line for line in expected]
    assert result_code == code


def test_stage_names_through_a_relation(cli: Cli, rules_dir: Rules) -> None:
    text = (
        "id: w\nentity: quote\ntrigger: {on: updated}\nconditions: {deal.stage: {in: [wonn]}}\n"
        "actions: [{warn: x}]\n"
    )
    code, lines = lint_lines(cli, rules_dir, text)
    assert lines == [
        f"rules/w.yaml:4:32: CF212 w: deal.stage in: deal has no stage 'wonn' {STAGES} "
        "(did you mean 'won'?)"
    ]
    assert code == 1


def test_notify_recipients(cli: Cli, rules_dir: Rules) -> None:
    text = (
        f"{HEAD}actions:\n"
        "  - notify:\n"
        "      to: [owner, actor, 5, '7', 'role:sales', a@b.example, '{{ deal.owner_id }}',\n"
        "           0f8fad5b-d9cb-469f-a165-70867728950e, assignee, ownr, 99x, 'role:']\n"
        "      subject: x\n"
        "  - notify: {to: actr, subject: x}\n"
    )
    code, lines = lint_lines(cli, rules_dir, text)
    forms = "(a user id, owner, actor, role:NAME, an e-mail address or a template)"
    assert lines == [
        f"rules/w.yaml:7:50: CF221 w: notify.to: 'assignee' is not a recipient {forms}",
        f"rules/w.yaml:7:60: CF221 w: notify.to: 'ownr' is not a recipient {forms} "
        "(did you mean 'owner'?)",
        f"rules/w.yaml:7:66: CF221 w: notify.to: '99x' is not a recipient {forms}",
        f"rules/w.yaml:7:71: CF221 w: notify.to: 'role:' is not a recipient {forms}",
        f"rules/w.yaml:9:18: CF221 w: notify.to: 'actr' is not a recipient {forms} "
        "(did you mean 'actor'?)",
    ]
    assert code == 1


def test_recipients_match_what_the_resolver_accepts() -> None:
    """Lint's recipient forms are the run-time resolver's (engine/effects/messages.py)."""
    from unittest.mock import MagicMock

    from crmflow.engine.effects.messages import resolve_recipients
    from crmflow.errors import ActionError
    from crmflow.rules.semantics import recipient_problem

    job = MagicMock()
    job.record = {"owner_id": 1, "id": 3}
    job.crm.get.return_value = {"id": 1}
    job.crm.find.return_value = []
    samples = [5, "7", " 8 ", "owner", "actor", "role:sales", "a@b.example", "ownr", "99x"]
    samples += ["0f8fad5b-d9cb-469f-a165-70867728950e", "assignee", True, "Owner"]
    for target in samples:
        try:
            resolve_recipients(job, [target])
            accepted = True
        except ActionError:
            accepted = False
        assert (recipient_problem(target) is None) == accepted, target


WEBHOOKS = (
    f"{HEAD}actions:\n"
    "  - webhook: {url: 'https://hooks.example.com/erp/orders'}\n"
    "  - webhook: {url: 'https://evil.example.org/x'}\n"
    "  - webhook: {url: 'https://hooks.example.com/../x'}\n"
    "  - webhook: {url: 'https://hooks.example.com/{{ deal.id }}'}\n"
    "  - webhook: {url: 'http://hooks.example.com/erp/orders'}\n"
)


def test_webhook_urls_the_allow_list_refuses(cli: Cli, rules_dir: Rules, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text(
        "webhooks: {allow: ['https://hooks.example.com/*']}\n", encoding="utf-8"
    )
    code, lines = lint_lines(cli, rules_dir, WEBHOOKS)
    allow = "(webhooks.allow in crmflow.yaml: https://hooks.example.com/*)"
    assert lines == [
        "rules/w.yaml:6:20: CF222 w: webhook: https://evil.example.org/x is refused at run "
        f"time: https://evil.example.org:443/x is not in webhooks.allow {allow}",
        "rules/w.yaml:7:20: CF222 w: webhook: https://hooks.example.com/../x is refused at run "
        f"time: the path climbs above the root {allow}",
        "rules/w.yaml:9:20: CF222 w: webhook: http://hooks.example.com/erp/orders is refused "
        f"at run time: http://hooks.example.com:80/erp/orders is not in webhooks.allow {allow}",
    ]
    assert code == 1


def test_an_empty_allow_list_admits_no_url(cli: Cli, rules_dir: Rules, tmp_path: Path) -> None:
    (tmp_path / "crmflow.yaml").write_text("timezone: UTC\n", encoding="utf-8")
    code, lines = lint_lines(cli, rules_dir, WEBHOOKS)
    assert lines[0] == (
        "rules/w.yaml:5:20: CF222 w: webhook: webhooks.allow in crmflow.yaml admits no URL, so "
        "https://hooks.example.com/erp/orders is refused at run time"
    )
    assert len(lines) == 4  # every literal URL; the templated one is known at run time
    assert code == 1


def test_without_a_configuration_webhook_urls_are_not_judged(cli: Cli, rules_dir: Rules) -> None:
    """No crmflow.yaml: lint cannot know the deployment's allow list."""
    code, lines = lint_lines(cli, rules_dir, WEBHOOKS)
    assert (code, lines) == (0, [])


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/erp/orders",
        "https://hooks.example.com/erp/./orders",
        "https://hooks.example.com/a/../../x",
        "https://hooks.example.com/%2e%2e/x",
        "https://hooks.example.com/a%2fb",
        "https://hooks.example.com/a;b",
        "https://HOOKS.example.com:443/x",
        "https://hooks.example.com:8443/x",
        "https://api.example.net:9000/v1/x",
        "https://api.example.net/v1/x",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com:99999/x",
        "http://10.0.0.5/erp",
        "http://10.0.0.5/other",
        "ftp://hooks.example.com/x",
        "https:///x",
        "https://hooks.example.com/a b",
    ],
)
def test_webhook_check_agrees_with_the_run_time_policy(url: str) -> None:
    """semantics.py repeats netguard's match (rules may not import the engine)."""
    from crmflow.engine.effects.netguard import Refused, UrlPolicy
    from crmflow.rules.semantics import webhook_refusal

    allow = ["https://hooks.example.com/*", "https://api.example.net:*/v1/*", "http://10.0.0.5/erp"]
    policy = UrlPolicy(allow, resolve=lambda host, port: ["93.184.216.34"])
    try:
        policy.check(url)
        refused = False
    except Refused:
        refused = True
    assert (webhook_refusal(url, allow) is not None) == refused


def test_wait_until_without_on_met(cli: Cli, rules_dir: Rules) -> None:
    text = (
        f"{HEAD}actions:\n"
        "  - wait: {for: 3d, until: {last_activity_at: {changed: true}}}\n"
        "  - wait: {until: {amount: {gt: 5}}, on_met: continue}\n"
        "  - warn: x\n"
    )
    code, lines = lint_lines(cli, rules_dir, text)
    assert lines == [
        "rules/w.yaml:5:21: CF223 warning: w: wait: until without on_met: when until holds, the "
        "actions after the wait go on (on_met defaults to continue); write on_met: continue to "
        "say so, or on_met: stop to end the workflow there"
    ]
    assert code == 0
    assert cli("lint", "--strict", "rules").code == 1


# CF224: a template whose own constants go over a bound of one rendering; the data
# cannot change that, so the action would fail every time.
TEMPLATE_BOMBS = [
    ("{{ range(10**7) | list | length }}", "range() of 10,000,000 steps"),
    ("{{ 'x' * 10**7 }}", "a result of over 1,000,000 items or characters"),
    ("{{ ('x' * 1000000) * 1000 }}", "a result of over 1,000,000 items or characters"),
    (
        "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
        "nested loops of 1,000,000 steps",
    ),
    ("{{ 2 ** 5000 }}", "an exponent over 1000"),
    ("{{ ((10 ** 1000) ** 1000) ** 1000 }}", "a number of over 100,000 bits"),
]


@pytest.mark.parametrize(("template", "reason"), TEMPLATE_BOMBS)
def test_a_template_over_a_visible_bound_is_a_lint_error(
    cli: Cli, rules_dir: Rules, template: str, reason: str
) -> None:
    text = f'{HEAD}actions:\n  - warn: "{template}"\n'
    code, lines = lint_lines(cli, rules_dir, text)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("rules/w.yaml:5:11: CF224 w: "), lines
    assert reason in lines[0]
    assert lines[0].endswith("the action would fail every time")


@pytest.mark.parametrize(
    "template",
    [
        "{{ deal.name * 3 }}",  # only the data can tell
        "{% for i in range(100) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{{ 'ab' * 1000 }}",
        "{{ 10 ** 1000 }}",
        "{{ 2.5 ** 1e10 }}",  # fails at run time with its own error, not a bound
    ],
)
def test_templates_within_the_bounds_pass(cli: Cli, rules_dir: Rules, template: str) -> None:
    code, lines = lint_lines(cli, rules_dir, f'{HEAD}actions:\n  - warn: "{template}"\n')
    assert (code, lines) == (0, [])


def test_roles_are_checked_against_the_configuration_when_it_lists_them(
    cli: Cli, rules_dir: Rules, tmp_path: Path
) -> None:
    text = f'{HEAD}actions:\n  - notify: {{to: ["role:managment", "role:sales"], subject: x}}\n'
    # Without a list, a role is only checked for its form.
    assert lint_lines(cli, rules_dir, text) == (0, [])
    (tmp_path / "crmflow.yaml").write_text("roles: [sales, management]\n")
    code, lines = lint_lines(cli, rules_dir, text)
    assert code == 1
    assert lines == [
        "rules/w.yaml:5:19: CF221 w: notify.to: no role 'managment' in the configuration's "
        "roles (sales, management) (did you mean 'management'?)"
    ]
