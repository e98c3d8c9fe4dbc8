"""Action templates: Jinja2 in an immutable sandbox, compiled once, never from CRM data.

Every string in an action is a template. A string that is exactly one `{{ expression }}`
keeps the expression's type; any other renders to a string with null as "". A missing
field of a record is null; any other undefined name is an error (StrictUndefined).
Only strings from workflow files are ever compiled; values from the CRM are data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo
from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crmflow import durations
from crmflow.timeutil import parse_temporal, to_instant

CONTEXT_NAMES = ("record", "previous", "changes", "actor", "now", "rule", "steps")
_DIGIT = re.compile(r"\d")
_SINGLE_RE = re.compile(r"\{\{((?:(?!\{\{|\}\}|\{%|\{#).)*)\}\}", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


class TemplateFailure(Exception):
    """A template that does not compile or render; the message is one line."""


class Record(Mapping[str, Any]):
    """A record as templates see it: `deal.name`; missing fields are null.

    With a source of related records (a configured CRM), a relation the event does not
    embed (`deal.company.name`, `company.contacts`) is read when a template first asks.
    """

    __slots__ = ("_data", "_entity", "_loaded", "_related")

    def __init__(
        self, data: Mapping[str, Any], entity: str | None = None, related: Any = None
    ) -> None:
        self._data = data
        self._entity = entity
        self._related = related
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._wrap(key, self._data[key])
        if self._related is None or self._entity is None:
            return None
        if key not in self._loaded:
            self._loaded[key] = self._related.load(self._entity, self._data, key)
        return self._wrap(key, self._loaded[key])

    def _wrap(self, key: str, value: Any) -> Any:
        if isinstance(value, (dict, list)) and self._related is not None and self._entity:
            target = self._related.relation_entity(self._entity, key)
            return wrap(value, target, self._related)
        return wrap(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(dict(self._data))

    def __str__(self) -> str:
        return str(dict(self._data))


def wrap(value: Any, entity: str | None = None, related: Any = None) -> Any:
    if isinstance(value, dict):
        return Record(value, entity, related)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [wrap(v, entity, related) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """Plain JSON-able data back from what an expression returned."""
    if isinstance(value, Record):
        return {k: unwrap(v) for k, v in value._data.items()}
    if isinstance(value, Mapping):
        return {str(k): unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unwrap(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# Bounds of one rendering, so that a template cannot take the machine: the longest string
# or list an operator may build, and the loop steps (`range`) all of its loops may take.
MAX_SIZE = 1_000_000
MAX_STEPS = 100_000
# Integers grow without bound by `*` and `**` (squaring in a loop doubles the digits each
# step): a result over this many bits (about 30,000 digits) is refused.
MAX_INT_BITS = 100_000
_steps: ContextVar[list[int]] = ContextVar("template_steps")


def _bounded_range(*args: int) -> range:
    """`range` drawing from the rendering's budget of loop steps: nested loops multiply."""
    steps = range(*args)
    budget = _steps.get(None)
    if budget is not None:
        budget[0] -= len(steps)
        if budget[0] < 0:
            raise SecurityError(f"loops over range() take more than {MAX_STEPS:,} steps")
    elif len(steps) > MAX_STEPS:
        raise SecurityError(f"range() of more than {MAX_STEPS:,} steps")
    return steps


def _bits(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value.bit_length()


def over_bound(operator: str, left: Any, right: Any) -> str | None:
    """Why `left operator right` would go over a bound of one rendering, before it is
    computed; None when it would not. Rendering and lint (on constants) both ask."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, (str, list, tuple))
                and isinstance(times, int)
                and len(seq) * times > MAX_SIZE
            ):
                return f"a result of over {MAX_SIZE:,} items or characters"
        bits = (_bits(left), _bits(right))
        if None not in bits and sum(bits) > MAX_INT_BITS:  # type: ignore[arg-type]
            return f"a number of over {MAX_INT_BITS:,} bits"
    elif operator == "**":
        base, exponent = _bits(left), _bits(right)
        if base is not None and exponent is not None:
            if abs(right) > 1000:
                return "an exponent over 1000"
            if abs(left) > 1 and base * right > MAX_INT_BITS:
                return f"a number of over {MAX_INT_BITS:,} bits"
    elif operator == "+":
        sizes = [len(v) for v in (left, right) if isinstance(v, (str, list, tuple))]
        if len(sizes) == 2 and sum(sizes) > MAX_SIZE:
            return f"a result of over {MAX_SIZE:,} items or characters"
    return None


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus record semantics: `.field` reads the field, null propagates,
    and bounds on what one rendering may build (MAX_SIZE) and loop (MAX_STEPS)."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        problem = over_bound(operator, left, right)
        if problem is not None:
            raise SecurityError(problem)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Record) and not attribute.startswith("_"):
            return obj[attribute]
        if obj is None:
            return None
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Record) and isinstance(argument, str) and not argument.startswith("_"):
            return obj[argument]
        if obj is None:
            return None
        return super().getitem(obj, argument)


def _zone(context: Any) -> tzinfo:
    # `now` is rendered in the configured time zone, so it carries the zone to filters.
    now = context.get("now")
    return now.tzinfo if isinstance(now, datetime) and now.tzinfo else UTC


@pass_context
def _shift(context: Any, value: Any, offset: str) -> datetime | None:
    """`{{ now | shift('14d') }}`: a date or time moved by a signed offset."""
    moment = parse_temporal(value)
    if moment is None:
        return None
    tz = _zone(context)
    return durations.parse(offset, signed=True).add_to(to_instant(moment, tz), tz)


@pass_context
def _date(context: Any, value: Any, fmt: str = "%Y-%m-%d") -> str:
    """`{{ deal.expected_close_date | date('%d.%m.%Y') }}`: format a date or time."""
    moment = parse_temporal(value)
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        moment = moment.astimezone(_zone(context))
    return moment.strftime(fmt)


@cache
def environment(autoescape: bool = False) -> _Environment:
    """The sandbox; with `autoescape`, for HTML, where CRM values are escaped."""
    env = _Environment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )
    env.filters["shift"] = _shift
    env.filters["date"] = _date
    env.globals["range"] = _bounded_range
    return env


class Template:
    """One compiled string of an action (compiled lazily, at most once)."""

    __slots__ = ("_render", "autoescape", "source")

    def __init__(self, source: str, autoescape: bool = False) -> None:
        self.source = source
        self.autoescape = autoescape
        self._render: Any = None

    def compile(self) -> None:
        if self._render is not None:
            return
        env = environment(self.autoescape)
        # An HTML body is always text: no single-expression typing, so escaping applies.
        single = None if self.autoescape else _SINGLE_RE.fullmatch(self.source)
        try:
            if single is not None:
                expression = env.compile_expression(single.group(1), undefined_to_none=False)

                def render_value(context: dict[str, Any]) -> Any:
                    result = expression(**context)
                    if isinstance(result, Undefined):
                        result._fail_with_undefined_error()
                    return unwrap(result)

                self._render = render_value
            else:
                template = env.from_string(self.source)
                self._render = lambda context: template.render(context)
        except TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax error: {exc.message}") from None

    def render(self, context: dict[str, Any]) -> Any:
        if self._render is None:
            self.compile()
        budget = _steps.set([MAX_STEPS])
        try:
            result = self._render(context)
            if isinstance(result, str) and len(result) > MAX_SIZE:
                raise TemplateFailure(f"template output over {MAX_SIZE:,} characters")
            return result
        except UndefinedError as exc:
            raise TemplateFailure(f"undefined in template: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateFailure(f"refused by the template sandbox: {exc}") from None
        except TemplateError as exc:
            raise TemplateFailure(f"template error: {exc}") from None
        except TemplateFailure:
            raise
        except Exception as exc:  # a filter or operation failing on CRM data
            raise TemplateFailure(f"template error: {type(exc).__name__}: {exc}") from None
        finally:
            _steps.reset(budget)


def is_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def compile_tree(value: Any, html_keys: frozenset[str] = frozenset()) -> Any:
    """Action parameters with every template string replaced by a Template.

    Top-level keys in `html_keys` are HTML: their templates escape what they insert. A
    part without templates comes back as it is, not copied: compiled actions keep their
    parameters for as long as the rules are loaded, and most parameters hold none.
    """
    if isinstance(value, str):
        return Template(value) if is_template(value) else value
    if isinstance(value, dict):
        compiled = {
            k: Template(v, autoescape=True)
            if k in html_keys and isinstance(v, str)
            else compile_tree(v)
            for k, v in value.items()
        }
        same = all(compiled[k] is v for k, v in value.items())
        return value if same else compiled
    if isinstance(value, list):
        items = [compile_tree(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def source_tree(value: Any) -> Any:
    """What `compile_tree` compiled, back as written: each Template as its source text.

    A part without templates comes back as it is (compile_tree did not copy it either).
    """
    if type(value) is Template:
        return value.source
    if type(value) is dict:
        written = {k: source_tree(v) for k, v in value.items()}
        return value if all(written[k] is v for k, v in value.items()) else written
    if type(value) is list:
        items = [source_tree(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def render_tree(value: Any, context: dict[str, Any]) -> Any:
    if type(value) is Template:
        return value.render(context)
    if type(value) is dict:
        return {k: render_tree(v, context) for k, v in value.items()}
    if type(value) is list:
        return [render_tree(v, context) for v in value]
    return value


def iter_templates(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Template]]:
    if isinstance(value, Template):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_templates(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_templates(v, (*path, i))


@lru_cache(maxsize=4096)
def _parse(source: str) -> nodes.Template:
    """A template's syntax tree. Workflow files repeat the same templates, and lint reads
    each tree more than once: each text is parsed once."""
    single = _SINGLE_RE.fullmatch(source)
    text = source if single is None else "{{" + single.group(1) + "}}"
    return environment().parse(text)


@lru_cache(maxsize=4096)
def references(source: str) -> tuple[frozenset[str], tuple[tuple[str, ...], ...]]:
    """Free names of a template and the attribute chains read from them, for lint.

    `{{ deal.company.name }}` gives ({"deal"}, (("deal", "company", "name"),)).
    """
    from jinja2 import meta

    tree = _parse(source)
    names = meta.find_undeclared_variables(tree)
    chains: list[tuple[str, ...]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain: list[str] = []
        current: nodes.Node = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            if isinstance(current, nodes.Getattr):
                chain.append(current.attr)
            elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
                chain.append(current.arg.value)
            else:
                chain = []
                break
            current = current.node
        if chain and isinstance(current, nodes.Name):
            chains.append((current.name, *reversed(chain)))
    # Keep only maximal chains: deal.company.name implies deal.company.
    chains.sort(key=len, reverse=True)
    maximal: list[tuple[str, ...]] = []
    for chain in chains:
        if not any(other[: len(chain)] == chain for other in maximal):
            maximal.append(chain)
    return frozenset(names), tuple(maximal)


class _Unknown(Exception):
    """Part of an expression is not known before the template renders."""


class _Excess(Exception):
    """A constant part of a template goes over a bound of one rendering."""


def _fold(node: nodes.Node) -> Any:
    """The value of a constant expression, checking each step against the bounds before
    computing it: `('x' * 1000000) * 1000` is refused, never built."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_fold(item) for item in node.items]
    if isinstance(node, nodes.Neg):
        return -_number(_fold(node.node))
    if isinstance(node, nodes.Pos):
        return _number(_fold(node.node))
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul, nodes.Pow, nodes.FloorDiv)):
        left, right = _fold(node.left), _fold(node.right)
        return _binop(type(node).__name__, left, right)
    raise _Unknown


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Unknown
    return value


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


_OPERATORS = {"Mul": "*", "Add": "+", "Pow": "**", "Sub": "-", "FloorDiv": "//"}


def _binop(kind: str, left: Any, right: Any) -> Any:
    operator = _OPERATORS[kind]
    problem = over_bound(operator, left, right)
    if problem is not None:
        raise _Excess(problem)
    if kind in ("Mul", "Add") and (_size(left) is not None or _size(right) is not None):
        try:
            return left * right if kind == "Mul" else left + right
        except TypeError:
            raise _Unknown from None
    a, b = _number(left), _number(right)
    if kind == "Mul":
        return a * b
    if kind == "Add":
        return a + b
    if kind == "Sub":
        return a - b
    if kind == "Pow":
        return a**b
    if b == 0:
        raise _Unknown
    return a // b


def _range_steps(node: nodes.Node) -> int | None:
    """The steps of `range(...)` with constant arguments; None when not known."""
    if not (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and not node.kwargs
    ):
        return None
    try:
        args = [_fold(arg) for arg in node.args]
        if not args or len(args) > 3 or not all(isinstance(a, int) for a in args):
            return None
        return len(range(*args))
    except (_Unknown, ValueError, OverflowError):
        return None


def _loop_steps(node: nodes.Node, outer: int) -> int:
    """The most steps nested `for ... in range(constant)` loops take, outer loops
    multiplying inner ones, as the rendering's budget counts them."""
    most = 0
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.For):
            steps = _range_steps(child.iter)
            inner = outer * steps if steps is not None else outer
            if steps is not None:
                most = max(most, inner)
            most = max(most, _loop_steps(child, inner if steps is not None else outer))
        else:
            most = max(most, _loop_steps(child, outer))
    return most


@lru_cache(maxsize=4096)
def visible_excess(source: str) -> str | None:
    """Why a template would go over a bound of one rendering (MAX_SIZE, MAX_STEPS,
    MAX_INT_BITS, the exponent) whatever the record holds, seen from its constants alone;
    None if it would not, or if only the data can tell. Lint reports it; a run would fail
    the action."""
    if len(source) < MAX_SIZE and _DIGIT.search(source) is None:
        return None  # no number to loop, repeat or raise to: nothing can go over
    tree = _parse(source)
    for call in tree.find_all(nodes.Call):
        steps = _range_steps(call)
        if steps is not None and steps > MAX_STEPS:
            return f"range() of {steps:,} steps (a rendering may loop {MAX_STEPS:,})"
    steps = _loop_steps(tree, 1)
    if steps > MAX_STEPS:
        return f"nested loops of {steps:,} steps (a rendering may loop {MAX_STEPS:,})"
    for expr in tree.find_all((nodes.Mul, nodes.Add, nodes.Pow)):
        try:
            _fold(expr)
        except _Excess as exc:
            return str(exc)
        except (_Unknown, ArithmeticError, TypeError, ValueError):
            continue  # only the data, or the run's own error, can tell
    return None
