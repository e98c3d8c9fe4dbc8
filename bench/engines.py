"""The same workload in each engine: crmflow, hand-written Python, and four peers.

Every engine answers one question per event: the ids of the workflows it triggers, in
workflow order. All get the events indexed by (entity, event) the same way, so what is
compared is the evaluation of conditions. The peers take flat records made before the
timing starts (bench.workload.flat).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.workload import NOW, Clause, Rule, crmflow_documents, date_bound
from crmflow.engine.events import Event

Run = Callable[[list[Event], list[dict[str, Any]]], list[list[str]]]
Bucket = dict[tuple[str, str], list[tuple[int, Any]]]


def _buckets(ruleset: list[Rule], build: Callable[[Rule], Any]) -> Bucket:
    index: Bucket = {}
    for i, rule in enumerate(ruleset):
        compiled = build(rule)
        for kind in rule.events:
            index.setdefault((rule.entity, kind), []).append((i, compiled))
    return index


def crmflow_engine(ruleset: list[Rule]) -> Run:
    """crmflow through its library API: load_ruleset + Evaluator.matching."""
    from crmflow.config import Config
    from crmflow.engine.evaluate import Evaluator
    from crmflow.rules.ruleset import load_ruleset

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "workflows.yaml")
        path.write_text(yaml.safe_dump_all(crmflow_documents(ruleset)), encoding="utf-8")
        rules = load_ruleset([path], Config())
    evaluator = Evaluator(rules, UTC)

    def run(stream: list[Event], flats: list[dict[str, Any]]) -> list[list[str]]:
        return [evaluator.matching(e, NOW) for e in stream]

    return run


class RawRun:
    """crmflow over raw events (mappings as decoded from JSON), through `matching_raw`."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        from crmflow.config import Config
        from crmflow.engine.evaluate import Evaluator
        from crmflow.rules.ruleset import load_ruleset

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "workflows.yaml")
            path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
            rules = load_ruleset([path], Config())
        self.rules = rules
        self.evaluator = Evaluator(rules, UTC)

    def __call__(self, stream: list[dict[str, Any]]) -> list[list[str]]:
        # The mappings as they are: `matching_raw` makes no Event of them.
        matching = self.evaluator.matching_raw
        return [matching(d, NOW) for d in stream]

    def bucket(self, d: dict[str, Any]) -> bool:
        """Whether any workflow takes the event's (entity, event)."""
        return any(e.reacts for e in self.rules.entries(d["entity"], d["event"]))


def crmflow_raw_engine(documents: list[dict[str, Any]]) -> RawRun:
    """crmflow through its library API, from raw events: load_ruleset + matching_raw."""
    return RawRun(documents)


# -- hand-written: each workflow as the lambda a programmer would write ---------------------
def _python(clause: Clause, names: dict[str, Any]) -> str:
    kind = clause[0]
    if kind == "num":
        return f"r[{clause[1]!r}] > {clause[2]!r}"
    if kind == "eq":
        return f"r['stage'] == {clause[1]!r}"
    if kind == "in":
        return f"r['country'] in {set(clause[1])!r}"
    if kind == "contains":
        return f"{clause[1]!r} in r['name']"
    if kind == "changed_to":
        stage = clause[1]
        return f"(e == 'updated' and p['stage'] != {stage!r} and r['stage'] == {stage!r})"
    if kind == "date":
        bound = f"b{len(names)}"
        names[bound] = datetime.fromtimestamp(date_bound(clause[1]), UTC)
        return f"iso(r['last_activity_at']) < {bound}"
    return f"({_python(clause[1], names)} or {_python(clause[2], names)})"


def hand_engine(ruleset: list[Rule]) -> Run:
    """The baseline: one Python lambda per workflow, indexed by (entity, event)."""
    names: dict[str, Any] = {"iso": datetime.fromisoformat}

    def build(rule: Rule) -> Callable[..., bool]:
        body = " and ".join(_python(c, names) for c in rule.clauses)
        return eval(f"lambda r, p, e: {body}", names)  # type: ignore[no-any-return]

    index = _buckets(ruleset, build)
    ids = [rule.id for rule in ruleset]
    table = {key: [(ids[i], f) for i, f in members] for key, members in index.items()}

    def run(stream: list[Event], flats: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                wid
                for wid, f in table.get((e.entity, e.event), ())
                if f(e.record, e.previous, e.event)
            ]
            for e in stream
        ]

    return run


def _peer_run(
    ruleset: list[Rule], index: Bucket, test: Callable[[Any, dict[str, Any]], bool]
) -> Run:
    ids = [rule.id for rule in ruleset]

    def run(stream: list[Event], flats: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [ids[i] for i, rule in index.get((f["entity"], f["event"]), ()) if test(rule, f)]
            for f in flats
        ]

    return run


# -- rule-engine ---------------------------------------------------------------------------
def _rule_engine_text(clause: Clause) -> str:
    kind = clause[0]
    if kind == "num":
        return f"{clause[1]} > {clause[2]}"
    if kind == "eq":
        return f'stage == "{clause[1]}"'
    if kind == "in":
        return "country in [" + ", ".join(f'"{c}"' for c in clause[1]) + "]"
    if kind == "contains":
        return f'"{clause[1]}" in name'
    if kind == "changed_to":
        return f'(event == "updated" and prev_stage != "{clause[1]}" and stage == "{clause[1]}")'
    if kind == "date":
        return f"last_activity_ts < {date_bound(clause[1])!r}"
    return f"({_rule_engine_text(clause[1])} or {_rule_engine_text(clause[2])})"


def rule_engine_engine(ruleset: list[Rule]) -> Run:
    import rule_engine

    index = _buckets(
        ruleset,
        lambda rule: rule_engine.Rule(" and ".join(_rule_engine_text(c) for c in rule.clauses)),
    )
    return _peer_run(ruleset, index, lambda rule, f: rule.matches(f))


# -- json-logic ------------------------------------------------------------------------------
def _json_logic(clause: Clause) -> dict[str, Any]:
    kind = clause[0]
    if kind == "num":
        return {">": [{"var": clause[1]}, clause[2]]}
    if kind == "eq":
        return {"==": [{"var": "stage"}, clause[1]]}
    if kind == "in":
        return {"in": [{"var": "country"}, list(clause[1])]}
    if kind == "contains":
        return {"in": [clause[1], {"var": "name"}]}
    if kind == "changed_to":
        return {
            "and": [
                {"==": [{"var": "event"}, "updated"]},
                {"!=": [{"var": "prev_stage"}, clause[1]]},
                {"==": [{"var": "stage"}, clause[1]]},
            ]
        }
    if kind == "date":
        return {"<": [{"var": "last_activity_ts"}, date_bound(clause[1])]}
    return {"or": [_json_logic(clause[1]), _json_logic(clause[2])]}


def json_logic_engine(ruleset: list[Rule]) -> Run:
    from json_logic import jsonLogic

    index = _buckets(ruleset, lambda rule: {"and": [_json_logic(c) for c in rule.clauses]})
    return _peer_run(ruleset, index, lambda logic, f: bool(jsonLogic(logic, f)))


# -- business-rules ----------------------------------------------------------------------------
def _business(clause: Clause) -> dict[str, Any]:
    kind = clause[0]
    if kind == "num":
        return {"name": clause[1], "operator": "greater_than", "value": clause[2]}
    if kind == "eq":
        return {"name": "stage", "operator": "equal_to", "value": clause[1]}
    if kind == "in":
        return {"any": [{"name": "country", "operator": "equal_to", "value": c} for c in clause[1]]}
    if kind == "contains":
        return {"name": "name", "operator": "contains", "value": clause[1]}
    if kind == "changed_to":
        # No "not equal" among its string operators: the change comes as a boolean.
        return {
            "all": [
                {"name": "event", "operator": "equal_to", "value": "updated"},
                {"name": "stage_changed", "operator": "is_true", "value": True},
                {"name": "stage", "operator": "equal_to", "value": clause[1]},
            ]
        }
    if kind == "date":
        return {"name": "last_activity_ts", "operator": "less_than", "value": date_bound(clause[1])}
    return {"any": [_business(clause[1]), _business(clause[2])]}


def business_rules_engine(ruleset: list[Rule]) -> Run:
    from business_rules import run_all
    from business_rules.actions import BaseActions, rule_action
    from business_rules.fields import FIELD_NUMERIC
    from business_rules.variables import (
        BaseVariables,
        boolean_rule_variable,
        numeric_rule_variable,
        string_rule_variable,
    )

    class Variables(BaseVariables):  # type: ignore[misc]
        def __init__(self, record: dict[str, Any]) -> None:
            self.r = record

        @numeric_rule_variable  # type: ignore[misc]
        def amount(self) -> Any:
            return self.r["amount"]

        @numeric_rule_variable  # type: ignore[misc]
        def score(self) -> Any:
            return self.r["score"]

        @numeric_rule_variable  # type: ignore[misc]
        def hours(self) -> Any:
            return self.r["hours"]

        @numeric_rule_variable  # type: ignore[misc]
        def last_activity_ts(self) -> Any:
            return self.r["last_activity_ts"]

        @string_rule_variable  # type: ignore[misc]
        def stage(self) -> Any:
            return self.r["stage"]

        @string_rule_variable  # type: ignore[misc]
        def country(self) -> Any:
            return self.r["country"]

        @string_rule_variable  # type: ignore[misc]
        def name(self) -> Any:
            return self.r["name"]

        @string_rule_variable  # type: ignore[misc]
        def event(self) -> Any:
            return self.r["event"]

        @boolean_rule_variable  # type: ignore[misc]
        def stage_changed(self) -> Any:
            return self.r["stage_changed"]

    hits: list[int] = []

    class Actions(BaseActions):  # type: ignore[misc]
        @rule_action(params={"index": FIELD_NUMERIC})  # type: ignore[misc]
        def hit(self, index: int) -> None:
            hits.append(index)

    index: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i, rule in enumerate(ruleset):
        spec = {
            "conditions": {"all": [_business(c) for c in rule.clauses]},
            "actions": [{"name": "hit", "params": {"index": i}}],
        }
        for kind in rule.events:
            index.setdefault((rule.entity, kind), []).append(spec)
    ids = [rule.id for rule in ruleset]
    actions = Actions()

    def run(stream: list[Event], flats: list[dict[str, Any]]) -> list[list[str]]:
        out = []
        for f in flats:
            hits.clear()
            specs = index.get((f["entity"], f["event"]), [])
            run_all(specs, Variables(f), actions, stop_on_first_trigger=False)
            out.append([ids[i] for i in hits])
        return out

    return run


# -- durable-rules ---------------------------------------------------------------------------
_durable_sets = 0


def _durable(clause: Clause, m: Any) -> Any:
    kind = clause[0]
    if kind == "num":
        return getattr(m, clause[1]) > clause[2]
    if kind == "eq":
        return m.stage == clause[1]
    if kind == "in":
        a, b, c = clause[1]
        return (m.country == a) | (m.country == b) | (m.country == c)
    if kind == "contains":
        return m.name.matches(f".*{clause[1]}.*")
    if kind == "changed_to":
        return (m.event == "updated") & (m.prev_stage != clause[1]) & (m.stage == clause[1])
    if kind == "date":
        return m.last_activity_ts < date_bound(clause[1])
    return _durable(clause[1], m) | _durable(clause[2], m)


def _recorder(hits: list[int], index: int) -> Callable[[Any], None]:
    # A closure, not a default argument: durable-rules may pass actions a second argument.
    def fire(c: Any) -> None:
        hits.append(index)

    return fire


def durable_rules_engine(ruleset: list[Rule]) -> Run:
    """A ruleset per (entity, event); each event is asserted as a fact and retracted.

    Facts, not posted events: durable-rules consumes an event with the first rule that
    matches it, while every matching workflow must be found.
    """
    from durable.engine import MessageNotHandledException
    from durable.lang import assert_fact, m, retract_fact, when_all
    from durable.lang import ruleset as durable_ruleset

    global _durable_sets
    hits: list[int] = []
    names: dict[tuple[str, str], str] = {}
    grouped: dict[tuple[str, str], list[tuple[int, Rule]]] = {}
    for i, rule in enumerate(ruleset):
        for kind in rule.events:
            grouped.setdefault((rule.entity, kind), []).append((i, rule))
    for key, members in grouped.items():
        _durable_sets += 1
        name = names[key] = f"bench{_durable_sets}"
        with durable_ruleset(name):
            for i, rule in members:
                test = _durable(rule.clauses[0], m)
                for clause in rule.clauses[1:]:
                    test = test & _durable(clause, m)

                when_all(test)(_recorder(hits, i))
    ids = [rule.id for rule in ruleset]

    def run(stream: list[Event], flats: list[dict[str, Any]]) -> list[list[str]]:
        out = []
        for f in flats:
            hits.clear()
            name = names.get((f["entity"], f["event"]))
            if name is not None:
                # It reports a fact no rule takes as an exception.
                with contextlib.suppress(MessageNotHandledException):
                    assert_fact(name, f)
                with contextlib.suppress(MessageNotHandledException):
                    retract_fact(name, f)
            # An `or` becomes one rule per branch: a fact meeting two fires twice.
            out.append([ids[i] for i in sorted(set(hits))])
        return out

    return run


PEERS: dict[str, Callable[[list[Rule]], Run]] = {
    "durable-rules": durable_rules_engine,
    "json-logic": json_logic_engine,
    "business-rules": business_rules_engine,
    "rule-engine": rule_engine_engine,
}
