"""Semantic checks of workflows: what the schema cannot know.

Some checks guard compilation (a cron that does not parse, a regex that does not
compile, duplicate ids) and run on every load; the rest (fields known to the entity
model, templates, step references, stages) run for `crmflow lint`.

Lint also checks a document the schema refused, so that one run reports every mistake
of a file: the parts the schema refused are left out (their finding names the cause, and
anything said about them would be a cascade), and a check that needs a part that is
missing or malformed is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError

from crmflow import durations
from crmflow.cron import CronError, parse_cron
from crmflow.errors import Location
from crmflow.findings import Finding
from crmflow.rules.actions import IN_DATABASE, action_type, normalise_params
from crmflow.rules.conditions import is_field_ref, iter_field_clauses
from crmflow.rules.entities import TEMPORAL_TYPES, EntityModel, suggest
from crmflow.rules.operators import PATTERN_MAX_MEM, PatternError, compile_pattern
from crmflow.rules.registry import ACTIONS, OPERATORS
from crmflow.rules.templates import (
    CONTEXT_NAMES,
    Template,
    TemplateFailure,
    compile_tree,
    iter_templates,
    references,
    visible_excess,
)
from crmflow.rules.yamlload import Document
from crmflow.urls import Refused, allowed, parse_pattern
from crmflow.values import display, is_number, temporal

if TYPE_CHECKING:
    # Only a parameter type: configuration is loaded a layer above the rules.
    from crmflow.config import Config

YamlPath = tuple[str | int, ...]
_JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"}
_STEP_RE = re.compile(r"steps\.([A-Za-z_][A-Za-z0-9_]*)")
# Operators whose operand is compared with the field's value, and what a wrong type
# means: "never" holds (eq), or "always" holds (ne); `in` and `not_in` per member.
_TYPED_OPS = {
    "eq": "never",
    "changed_from": "never",
    "changed_to": "never",
    "gt": "never",
    "gte": "never",
    "lt": "never",
    "lte": "never",
    "in": "never",
    "ne": "always",
    "not_in": "always",
}
_STAGE_OPS = ("eq", "ne", "in", "not_in", "changed_from", "changed_to")
_NUMBER_TEXT = re.compile(r"-?\d+(\.\d+)?")
# The forms resolve_recipients (engine/effects/messages.py) accepts, mirrored for lint.
_RECIPIENT_WORDS = ("owner", "actor")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def pattern_problem(operand: str) -> str | None:
    """Why a `matches` pattern cannot run (CF213), or None when it compiles for RE2."""
    try:
        compile_pattern(operand)
    except PatternError as exc:
        shown = operand if len(operand) <= 80 else operand[:77] + "..."
        if "too large" in exc.reason:
            return (
                f"regular expression {shown!r} is too large for the regex engine "
                f"(its program needs more than {PATTERN_MAX_MEM >> 20} MiB)"
            )
        try:
            # Python's re only tells a typo apart from a feature RE2 leaves out; it
            # compiles here and never runs, and compiling does not backtrack.
            re.compile(operand)
        except (re.error, RecursionError, OverflowError, ValueError) as python:
            return f"invalid regular expression {shown!r}: {python}"
        return (
            f"pattern not supported by the regex engine: {exc.reason} "
            "(RE2 syntax: no backreferences or lookaround)"
        )
    return None


def _kind(value: Any) -> str:
    """What a YAML operand is, in the words of the field types."""
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def _shown(value: Any) -> str:
    """An operand as YAML spells it, strings quoted: what the user has to tell apart."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return display(value)


def type_problem(field_type: str, operand: Any) -> str | None:
    """Why `operand` never equals or orders against a value of `field_type`, with a hint;
    None when it can (json fields and null are anything's equal)."""
    if operand is None or field_type == "json":
        return None
    kind = _kind(operand)
    hint = ""
    if field_type in ("integer", "number"):
        if kind == "number":
            return None
        if kind == "string" and _NUMBER_TEXT.fullmatch(operand.strip()):
            hint = f" (write {operand.strip()}, not {_shown(operand)})"
    elif field_type in ("string", "text"):
        if kind == "string":
            return None
        if kind in ("number", "boolean"):
            hint = f' (write "{display(operand)}", not {display(operand)})'
    elif field_type == "boolean":
        if kind == "boolean":
            return None
        if kind == "string" and operand.strip().lower() in ("true", "false"):
            hint = f" (write {operand.strip().lower()}, not {_shown(operand)})"
    elif field_type in TEMPORAL_TYPES:
        if kind == "string" and temporal(operand) is not None:
            return None
        hint = " (an ISO date such as 2026-01-31, or 2026-01-31T09:00:00Z)"
        if kind == "string":
            return f"{_shown(operand)} is not an ISO date{hint}"
    else:
        return None
    article = "an" if field_type == "integer" else "a"
    return f"{_shown(operand)} is a {kind}, not {article} {field_type}{hint}"


def webhook_refusal(url: str, allow: Sequence[str]) -> str | None:
    """Why the run-time URL policy refuses a literal URL before any DNS lookup, or None
    when a pattern of `allow` admits it (crmflow.urls: the same check the engine makes)."""
    patterns = []
    for text in allow:
        try:
            patterns.append(parse_pattern(text))
        except ValueError:
            continue  # the configuration check reports a bad pattern
    try:
        allowed(url, patterns)
    except Refused as exc:
        return str(exc).removeprefix(f"{url!r}: ")  # the finding names the URL already
    return None


def recipient_problem(target: Any) -> str | None:
    """Why a literal notify.to item names nobody at run time, or None."""
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        return f"{display(target)} is not a recipient"
    if isinstance(target, int):
        return None
    text = target.strip()
    if (
        text.isdigit()
        or text in _RECIPIENT_WORDS
        or (target.startswith("role:") and len(target) > 5)
        or "@" in target
        or _UUID.fullmatch(text)
        or "{{" in target
        or "{%" in target
    ):
        return None
    return (
        f"{target!r} is not a recipient (a user id, owner, actor, role:NAME, an e-mail "
        f"address or a template){suggest(text, _RECIPIENT_WORDS)}"
    )


def role_problem(target: Any, roles: Sequence[str] | None) -> str | None:
    """Why `role:NAME` names no role the configuration lists (None without a list)."""
    if roles is None or not isinstance(target, str) or not target.startswith("role:"):
        return None
    name = target[len("role:") :]
    if name in roles:
        return None
    known = ", ".join(roles) or "none"
    return f"no role {name!r} in the configuration's roles ({known}){suggest(name, roles)}"


class _Checker:
    def __init__(
        self,
        doc: Document,
        model: EntityModel,
        config: Config | None = None,
        refused: Sequence[YamlPath] | None = None,
    ) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        wid = self.data.get("id")
        self.id: str = wid if isinstance(wid, str) else ""
        self.model = model
        self.config = config
        # Paths the schema refused; None for a valid document. The root is not among
        # them: an unknown or missing top-level key leaves the other parts checkable.
        self.refused = None if refused is None else [p for p in refused if p]
        self.findings: list[Finding] = []

    def skips(self, path: YamlPath) -> bool:
        """Whether `path` lies in a part the schema refused (what is said of it would
        only repeat that finding)."""
        return bool(self.refused) and any(path[: len(p)] == p for p in self.refused)  # type: ignore[union-attr]

    def touches(self, path: YamlPath) -> bool:
        """Whether the schema refused `path` or any part inside it."""
        return bool(self.refused) and any(p[: len(path)] == path for p in self.refused)  # type: ignore[union-attr]

    def run(self, *checks: Callable[[], None]) -> None:
        for check in checks:
            if self.refused is None:
                check()
                continue
            try:
                check()
            except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                # A part the schema refused left this check without what it reads;
                # the schema finding already names the cause.
                continue

    def add(
        self, code: str, message: str, path: YamlPath, *, key: bool = False, severity: str = "error"
    ) -> None:
        if self.skips(path):
            return
        self.findings.append(
            Finding(
                code,
                severity,
                message,  # type: ignore[arg-type]
                self.doc.locate(path, key=key),
                self.id,
            )
        )

    # -- conditions -------------------------------------------------------------------
    def condition_blocks(self) -> Iterator[tuple[YamlPath, Any]]:
        if "conditions" in self.data:
            yield ("conditions",), self.data["conditions"]
        for i, spec in enumerate(self.data["actions"]):
            if self.skips(("actions", i)):
                continue
            if "if" in spec:
                yield ("actions", i, "if"), spec["if"]
            wait = spec.get("wait")
            if isinstance(wait, dict) and "until" in wait:
                yield ("actions", i, "wait", "until"), wait["until"]

    def check_operands(self) -> None:
        for base, block in self.condition_blocks():
            for path, _field, op, operand in iter_field_clauses(block, base):
                if self.skips(path):
                    continue
                if op == "matches":
                    problem = pattern_problem(operand)
                    if problem is not None:
                        self.add("CF213", problem, path)
                elif op in ("before", "after") and temporal(operand) is None:
                    try:
                        durations.parse(operand, signed=True)
                    except ValueError:
                        self.add(
                            "CF208",
                            f"{op}: {operand!r} is neither an ISO date nor an offset such as -14d",
                            path,
                        )

    def check_fields(self) -> None:
        entity = self.data["entity"]
        if entity not in self.model:
            self.add(
                "CF202",
                f"unknown entity {entity!r}{suggest(entity, self.model.names())}",
                ("entity",),
            )
            return
        trigger = self.data.get("trigger")
        if not isinstance(trigger, dict) or self.touches(("trigger",)):
            # Refused or missing (its finding says so): the field checks still hold,
            # what depends on the trigger is left out.
            trigger = {}
        events = trigger.get("on", [])
        events = [events] if isinstance(events, str) else events
        updates = not trigger or "updated" in events or "saved" in events or "date" in trigger
        for base, block in self.condition_blocks():
            if self.skips(base):
                continue
            for path, field_path, op, operand in iter_field_clauses(block, base):
                if self.skips(path):
                    continue
                key_path = path if path[-1] == field_path else path[:-1]
                info = self.field(entity, field_path, key_path, key=True)
                if is_field_ref(operand):
                    self.field(entity, operand["field"], (*path, "field"))
                definition = OPERATORS.get(op)
                if definition is None:
                    continue
                # A wait's `until` sees the record's later changes, whatever the trigger.
                if definition.kind == "change" and not updates and "until" not in base:
                    self.add(
                        "CF211",
                        f"{field_path} {op} {display(operand)} can never hold: the "
                        "trigger sees no updates (changed* is false on created and "
                        "deleted events)",
                        path,
                        key=True,
                        severity="warning",
                    )
                if info is not None and info.field_type:
                    self.check_type(op, field_path, info.field_type, path)
                    if not is_field_ref(operand):
                        self.check_operand_type(op, field_path, info, operand, path, entity)
                        self.check_stage_operand(op, field_path, info, operand, path)
        for i, name in enumerate(trigger.get("fields", [])):
            self.field(entity, name, ("trigger", "fields", i))
        if "fields" in trigger and not any(e in ("updated", "saved") for e in events):
            self.add(
                "CF216",
                "trigger.fields only filters updates, and this trigger has none",
                ("trigger", "fields"),
                key=True,
                severity="warning",
            )
        if "date" in trigger:
            info = self.field(entity, trigger["date"], ("trigger", "date"))
            if info is not None and info.field_type not in TEMPORAL_TYPES:
                self.add(
                    "CF214",
                    f"trigger.date: {trigger['date']} is a {info.field_type} field, not a date",
                    ("trigger", "date"),
                )

    def check_type(self, op: str, field_path: str, field_type: str, path: YamlPath) -> None:
        numeric = ("integer", "number")
        problem = None
        if op in ("before", "after") and field_type not in (*TEMPORAL_TYPES, "json"):
            problem = f"{op} compares dates, and {field_path} is a {field_type} field"
        elif op in ("gt", "gte", "lt", "lte") and field_type == "boolean":
            problem = f"{op} never holds on the boolean field {field_path}"
        elif op == "matches" and field_type in (*numeric, "boolean"):
            problem = f"matches only tests strings, and {field_path} is a {field_type} field"
        if problem:
            self.add("CF217", problem, path, key=True, severity="warning")

    def check_operand_type(
        self, op: str, field_path: str, info: Any, operand: Any, path: YamlPath, entity: str
    ) -> None:
        """CF220: an operand that no value of the field's type can ever equal or order
        against (SPEC §2: no coercion, the string "250000" is not gt 100000)."""
        effect = _TYPED_OPS.get(op)
        if effect is None or self._through_many(entity, field_path):
            return
        members = (
            list(enumerate(operand))
            if op in ("in", "not_in") and isinstance(operand, list)
            else [(None, operand)]
        )
        for index, member in members:
            problem = type_problem(info.field_type, member)
            if problem is None:
                continue
            where = path if index is None else (*path, index)
            if op in ("in", "not_in"):
                verdict = "never matches" if op == "in" else "never matches, so not_in holds"
                message = f"{field_path} {op}: {_shown(member)} {verdict}: {problem}"
            else:
                verdict = "can never hold" if effect == "never" else "always holds"
                message = f"{field_path} {op} {_shown(member)} {verdict}: {problem}"
            self.add("CF220", message, where, severity="error" if effect == "never" else "warning")

    def _through_many(self, entity: str, field_path: str) -> bool:
        """Whether a field path crosses a to-many relation (its value is then a list)."""
        current = self.model.get(entity)
        for part in field_path.split(".")[:-1]:
            relation = current.relations.get(part) if current else None
            if relation is None:
                return False
            if relation.to_many:
                return True
            current = self.model.get(relation.entity)
        return False

    def check_stage_operand(
        self, op: str, field_path: str, info: Any, operand: Any, path: YamlPath
    ) -> None:
        """CF212: a stage name in a condition on the pipeline field that the pipeline lacks."""
        definition = self.model.get(info.entity)
        pipeline = definition.pipeline if definition is not None else None
        if op not in _STAGE_OPS or pipeline is None:
            return
        if field_path.rsplit(".", 1)[-1] != pipeline.field:
            return
        stages = pipeline.all_stages
        members = list(enumerate(operand)) if isinstance(operand, list) else [(None, operand)]
        for index, stage in members:
            if isinstance(stage, str) and stage not in stages:
                self.add(
                    "CF212",
                    f"{field_path} {op}: {info.entity} has no stage {stage!r} "
                    f"(stages: {', '.join(stages)}){suggest(stage, stages)}",
                    path if index is None else (*path, index),
                )

    def field(self, entity: str, field_path: str, path: YamlPath, *, key: bool = False) -> Any:
        info = self.model.resolve(entity, field_path)
        if not info.ok:
            code = "CF203" if info.problem_kind == "field" else "CF204"
            self.add(code, f"{field_path}: {info.problem}", path, key=key)
            return None
        return info

    # -- actions ----------------------------------------------------------------------
    def check_actions(self) -> None:
        entity = self.data["entity"]
        known_entity = entity in self.model
        ids: dict[str, int] = {}
        for i, spec in enumerate(self.data["actions"]):
            if self.skips(("actions", i)):
                # Refused by the schema, but its id still names it: later steps.<id>
                # references to it are no mistake of their own.
                if isinstance(spec, dict) and isinstance(spec.get("id"), str):
                    ids.setdefault(spec["id"], i)
                continue
            if self.refused is None:
                self._check_action(i, spec, ids, entity, known_entity)
                continue
            try:
                self._check_action(i, spec, ids, entity, known_entity)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                # A part of this action the schema refused left a check without what it
                # reads; the schema finding names the cause, the next action is checked.
                continue

    def _check_action(
        self, i: int, spec: Any, ids: dict[str, int], entity: str, known_entity: bool
    ) -> None:
        kind = action_type(spec)
        params = normalise_params(ACTIONS[kind], spec[kind])
        path: YamlPath = ("actions", i, kind)
        prepare = ACTIONS[kind].prepare
        if prepare is not None:
            # A document's template file: read and checked as its other templates are.
            try:
                params = prepare(params, Path(self.doc.file).parent)
            except ValueError as exc:
                self.add("CF227", str(exc), (*path, "template"))
        if "id" in spec:
            if spec["id"] in ids:
                self.add(
                    "CF215",
                    f"action id {spec['id']!r} is used twice (first by actions[{ids[spec['id']]}])",
                    ("actions", i, "id"),
                )
            else:
                ids[spec["id"]] = i
        if ACTIONS[kind].templated:
            self.check_templates(params, path, entity if known_entity else None, ids, i)
        if kind == "notify":
            self.check_recipients(params.get("to"), (*path, "to"))
        elif kind == "webhook":
            self.check_webhook(params["url"], (*path, "url"))
        elif kind == "sms" and self.config is not None and self.config.path is not None:
            if not self.config.sms.gateway:
                self.add(
                    "CF226",
                    f"sms needs a gateway: sms: {{gateway: URL}} in {self.config.path}",
                    path,
                    key=True,
                )
        elif kind == "wait" and "until" in params and "on_met" not in params:
            self.add(
                "CF223",
                "wait: until without on_met: when until holds, the actions after the "
                "wait go on (on_met defaults to continue); write on_met: continue to "
                "say so, or on_met: stop to end the workflow there",
                (*path, "until"),
                key=True,
                severity="warning",
            )
        if not known_entity:
            return
        if kind == "create":
            target = params["entity"]
            if isinstance(target, str) and "{" not in target:
                if target not in self.model:
                    self.add(
                        "CF202",
                        f"create: unknown entity {target!r}{suggest(target, self.model.names())}",
                        (*path, "entity"),
                    )
                else:
                    self.check_values(target, params["values"], (*path, "values"))
        elif kind == "update":
            target_entity = entity
            if "target" in params:
                info = self.field(entity, params["target"], (*path, "target"))
                if info is None:
                    return
                if info.relation is None:
                    self.add(
                        "CF204",
                        f"update.target: {params['target']} is a field, not a relation",
                        (*path, "target"),
                    )
                    return
                target_entity = info.entity
            self.check_values(target_entity, params["values"], (*path, "values"))
        elif kind == "set_stage":
            self.check_stage(entity, params, path)

    def check_recipients(self, targets: Any, path: YamlPath) -> None:
        """CF221: literal notify.to items that resolve_recipients refuses at run time, and
        roles the configuration's `roles` does not list."""
        roles = self.config.roles if self.config is not None else None
        items = list(enumerate(targets)) if isinstance(targets, list) else [(None, targets)]
        for index, target in items:
            problem = recipient_problem(target) or role_problem(target, roles)
            if problem is not None:
                self.add(
                    "CF221", f"notify.to: {problem}", path if index is None else (*path, index)
                )

    def check_webhook(self, url: Any, path: YamlPath) -> None:
        """CF222: a literal URL the configuration's webhooks.allow refuses. Without a
        crmflow.yaml lint cannot know the deployment's allow list, and says nothing."""
        config = self.config
        if config is None or config.path is None or not isinstance(url, str):
            return
        if "{{" in url or "{%" in url:
            return
        allow = config.webhooks.allow
        if not allow:
            self.add(
                "CF222",
                f"webhook: webhooks.allow in {config.path} admits no URL, so {url} is "
                "refused at run time",
                path,
            )
            return
        reason = webhook_refusal(url, allow)
        if reason is not None:
            self.add(
                "CF222",
                f"webhook: {url} is refused at run time: {reason} "
                f"(webhooks.allow in {config.path}: {', '.join(allow)})",
                path,
            )

    def check_values(self, entity: str, values: dict[str, Any], path: YamlPath) -> None:
        definition = self.model.get(entity)
        assert definition is not None
        for name in values:
            if name not in definition.fields and name not in definition.relations:
                self.add(
                    "CF203",
                    f"{entity} has no field {name!r}{suggest(name, list(definition.fields))}",
                    (*path, name),
                    key=True,
                )

    def check_stage(self, entity: str, params: dict[str, Any], path: YamlPath) -> None:
        definition = self.model.get(entity)
        assert definition is not None
        stage = params["stage"]
        if definition.pipeline is None:
            self.add("CF219", f"set_stage: {entity} has no pipeline", path)
        elif (
            isinstance(stage, str)
            and "{" not in stage
            and stage not in definition.pipeline.all_stages
        ):
            stages = definition.pipeline.all_stages
            self.add(
                "CF212",
                f"set_stage: {entity} has no stage {stage!r} "
                f"(stages: {', '.join(stages)}){suggest(stage, stages)}",
                (*path, "stage")
                if isinstance(self.data["actions"][path[1]][path[2]], dict)
                else path,
            )

    def check_templates(
        self, params: Any, path: YamlPath, entity: str | None, ids: dict[str, int], index: int
    ) -> None:
        allowed = set(CONTEXT_NAMES) | _JINJA_GLOBALS | ({entity} if entity else set())
        for sub, template in iter_templates(compile_tree(params), path):
            assert isinstance(template, Template)
            try:
                # Parsing finds every syntax error; compiling to code (what a run needs)
                # would cost lint as much again, ~1 ms a template.
                names, chains = references(template.source)
            except (TemplateFailure, TemplateSyntaxError) as exc:
                message = (
                    str(exc)
                    if isinstance(exc, TemplateFailure)
                    else f"template syntax error: {exc.message}"
                )
                self.add("CF205", message, sub)
                continue
            excess = visible_excess(template.source)
            if excess is not None:
                self.add(
                    "CF224",
                    f"template goes over a bound of one rendering: {excess}; the action "
                    "would fail every time",
                    sub,
                )
            for name in sorted(names - allowed):
                self.add(
                    "CF206",
                    f"template name {name!r} is not defined (available: "
                    f"{', '.join(sorted(set(CONTEXT_NAMES) | ({entity} if entity else set())))})",
                    sub,
                )
            for chain in chains:
                root = chain[0]
                if root == "steps" and len(chain) > 1:
                    step = chain[1]
                    earlier = {k for k, v in ids.items() if v < index}
                    if step not in earlier:
                        self.add(
                            "CF207",
                            f"steps.{step} names no earlier action id"
                            f"{suggest(step, sorted(earlier))}",
                            sub,
                        )
                elif entity and root in ("record", "previous", entity) and len(chain) > 1:
                    self.field(entity, ".".join(chain[1:]), sub)
                elif entity and root == "changes" and len(chain) > 1:
                    self.field(entity, chain[1], sub)

    # -- schedule ---------------------------------------------------------------------
    def check_working_time(self) -> None:
        """CF225: business days or hours, or `within: business_hours`, without a
        `calendar:` in crmflow.yaml. Without a crmflow.yaml lint cannot know the
        deployment's calendar, and says nothing."""
        from crmflow.workdays import calendar_of

        config = self.config
        if config is None or config.path is None or calendar_of(config.timezone) is not None:
            return
        places: list[tuple[YamlPath, Any]] = [
            (("trigger", "offset"), (self.data.get("trigger") or {}).get("offset")),
            (("cooldown",), self.data.get("cooldown")),
        ]
        for i, spec in enumerate(self.data.get("actions") or []):
            if not isinstance(spec, dict) or self.skips(("actions", i)):
                continue
            places.append((("actions", i, "delay"), spec.get("delay")))
            wait = spec.get("wait")
            if isinstance(wait, dict):
                places.append((("actions", i, "wait", "for"), wait.get("for")))
            if spec.get("within") == "business_hours":
                self.add(
                    "CF225",
                    f"within: business_hours needs a calendar: in {config.path}",
                    ("actions", i, "within"),
                )
        for path, text in places:
            if not isinstance(text, str):
                continue
            try:
                span = durations.parse(text, signed=True)
            except ValueError:
                continue  # its own finding
            if span.working_time:
                self.add(
                    "CF225",
                    f"{text} counts working time, which needs a calendar: in {config.path}",
                    path,
                )

    def check_mode(self) -> None:
        """CF228: a run mode where runs cannot wait or are not per record, and max_runs
        where the mode has no use for it (engine/modes.py)."""
        mode, most = self.data.get("mode"), self.data.get("max_runs")
        trigger = self.data.get("trigger") or {}
        if mode is None and most is None:
            return
        where: YamlPath = ("mode",) if mode is not None else ("max_runs",)
        if "schedule" in trigger or "date" in trigger:
            kind = "schedule" if "schedule" in trigger else "date"
            why = (
                "runs of a schedule are for no record"
                if kind == "schedule"
                else "a date trigger keeps one fire time per record already (a change moves it)"
            )
            self.add("CF228", f"mode and max_runs do not apply to a {kind} trigger: {why}", where)
            return
        if most is not None and mode in ("single", "restart"):
            self.add(
                "CF228",
                f"max_runs does not apply to mode {mode}: at most one run waits",
                ("max_runs",),
            )
        actions = [a for a in self.data.get("actions") or [] if isinstance(a, dict)]
        if not any("delay" in a or "wait" in a or not _in_database(a) for a in actions):
            self.add(
                "CF228",
                f"mode {mode or 'parallel'} has no effect: every action of this workflow "
                "is done as its change is handled (a run waits only on a delay, a wait, "
                "or an action that goes to another host)",
                where,
                severity="warning",
            )

    def check_digests(self) -> None:
        """CF229: `digest:` on an action that sends no message, or with a cadence or time
        of day it cannot keep (rules/digest.py)."""
        from crmflow.rules.digest import DIGESTIBLE, DigestSpec

        for i, spec in enumerate(self.data.get("actions") or []):
            if not isinstance(spec, dict) or not isinstance(spec.get("digest"), dict):
                continue
            if self.touches(("actions", i, "digest")):
                continue  # the schema's finding says it
            kind = next((k for k in spec if k in DIGESTIBLE or k in ACTIONS), None)
            if kind not in DIGESTIBLE:
                self.add(
                    "CF229",
                    f"digest applies to notify and email, not to {kind}",
                    ("actions", i, "digest"),
                    key=True,
                )
                continue
            try:
                DigestSpec.parse(spec["digest"])
            except ValueError as exc:
                self.add("CF229", str(exc), ("actions", i, "digest"))

    def check_schedule(self) -> None:
        trigger = self.data["trigger"]
        if "schedule" in trigger:
            try:
                parse_cron(trigger["schedule"])
            except CronError as exc:
                self.add("CF209", str(exc), ("trigger", "schedule"))


def document_findings(
    doc: Document, config: Config, *, full: bool, refused: Sequence[YamlPath] | None = None
) -> list[Finding]:
    """The findings of one document; `refused` (lint only) names the paths the schema
    refused, which are left out."""
    checker = _Checker(doc, config.model, config, refused=refused)
    if refused is not None:
        checker.run(
            checker.check_schedule,
            checker.check_operands,
            checker.check_fields,
            checker.check_actions,
            checker.check_working_time,
            checker.check_mode,
            checker.check_digests,
        )
        return checker.findings
    checker.check_schedule()
    checker.check_mode()
    checker.check_digests()
    checker.check_operands()
    # Every load, not only lint: `eval` and `run` refuse what they could not schedule.
    checker.check_working_time()
    if full:
        checker.check_fields()
        checker.check_actions()
    return checker.findings


def _in_database(spec: dict[str, Any]) -> bool:
    """Whether the daemon does the action as its change is handled (the others go to its
    workers, and their run waits for them meanwhile)."""
    if "digest" in spec:
        return True  # collected into the state
    return any(key in IN_DATABASE for key in spec)


@dataclass(frozen=True, slots=True)
class Summary:
    """What the checks across workflows need of a valid one: its id and where it stands,
    and what it listens to and writes (for loops). Small, so that a folder checked in
    several processes sends these back instead of the documents."""

    id: str
    where: Location
    trigger: Location
    enabled: bool
    listens: frozenset[tuple[str, str]]
    writes: frozenset[tuple[str, str]]


def summary_of(doc: Document, model: EntityModel) -> Summary:
    data = doc.data
    return Summary(
        data["id"],
        doc.locate(("id",)),
        doc.locate(("trigger",), key=True),
        data.get("enabled", True),
        frozenset(_listens(data)),
        frozenset(_writes(data, model)),
    )


def across_findings(summaries: Sequence[Summary], *, full: bool) -> list[Finding]:
    """Duplicate ids (CF201) and, with `full`, loops between workflows (CF218)."""
    findings: list[Finding] = []
    first: dict[str, Summary] = {}
    for summary in summaries:
        prior = first.setdefault(summary.id, summary)
        if prior is not summary:
            findings.append(
                Finding(
                    "CF201",
                    "error",
                    f"duplicate workflow id {summary.id!r} (also at {prior.where})",
                    summary.where,
                    summary.id,
                )
            )
    if full:
        findings.extend(loop_findings(summaries))
    return findings


def _listens(data: dict[str, Any]) -> set[tuple[str, str]]:
    """(entity, field) updates that trigger a workflow; "*" for any field."""
    trigger = data["trigger"]
    events = trigger.get("on", [])
    events = [events] if isinstance(events, str) else list(events)
    if not ({"updated", "saved"} & set(events)) and "date" not in trigger:
        return set()
    fields = trigger.get("fields") or ([trigger["date"]] if "date" in trigger else ["*"])
    return {(data["entity"], f) for f in fields}


def _writes(data: dict[str, Any], model: EntityModel) -> set[tuple[str, str]]:
    """(entity, field) that a workflow's actions change."""
    entity = data["entity"]
    found: set[tuple[str, str]] = set()
    for spec in data["actions"]:
        kind = action_type(spec)
        params = normalise_params(ACTIONS[kind], spec[kind])
        if kind == "update" and isinstance(params.get("values"), dict):
            target = entity
            if params.get("target"):
                info = model.resolve(entity, params["target"])
                target = info.entity if info.ok and info.relation else ""
            found |= {(target, f) for f in params["values"]}
        elif kind == "set_stage":
            definition = model.get(entity)
            if definition is not None and definition.pipeline is not None:
                found.add((entity, definition.pipeline.field))
    return found


def loop_findings(summaries: Sequence[Summary]) -> list[Finding]:
    """CF218: workflows whose writes trigger each other (A -> B -> A), or themselves."""
    enabled = [s for s in summaries if s.enabled]
    listens = {s.id: s.listens for s in enabled}
    writes = {s.id: s.writes for s in enabled}

    # Who listens to what, so that finding whom a workflow's writes trigger costs its
    # writes, not one look at every other workflow.
    listeners: dict[tuple[str, str], list[str]] = {}
    for wid, heard in listens.items():
        for key in heard:
            listeners.setdefault(key, []).append(wid)
    order = {wid: i for i, wid in enumerate(listens)}
    triggered: dict[str, set[str]] = {}
    for wid, written in writes.items():
        reached = triggered[wid] = set()
        for entity, name in written:
            reached.update(listeners.get((entity, name), ()))
            reached.update(listeners.get((entity, "*"), ()))

    findings = []
    for summary in summaries:
        wid = summary.id
        if wid not in listens:
            continue
        partners = sorted(
            (other for other in triggered[wid] if wid in triggered[other]), key=order.__getitem__
        )
        if partners:
            loop = " -> ".join([wid, partners[0], wid]) if partners[0] != wid else f"{wid} -> {wid}"
            findings.append(
                Finding(
                    "CF218",
                    "warning",
                    f"possible loop: {loop} (each updates what the other triggers on; the daemon "
                    "stops such chains at chain_depth)",
                    summary.trigger,
                    wid,
                )
            )
    return findings
