"""A compiled yes/no check for the JSON Schemas crmflow generates (draft 2020-12).

jsonschema walks a schema anew for every document, building an error object per failed
branch of every `anyOf`; on the workflow schema that is ~0.4 ms a document, most of
`lint`'s time on a large rules folder. Almost every document is valid, and for a valid
one there is nothing to report, so `compile_schema` turns a schema into Python source
once, one function per subschema, which only answers "valid or not". A document it
refuses goes to jsonschema, which then explains why.

Only the keywords our schemas use are compiled; any other assertion keyword raises
`Unsupported` when the schema is compiled, never silently passes. Each keyword mirrors
jsonschema's own definition (its type checker, its `equal` for `enum`, `const` and
`uniqueItems`), and tests/test_fastschema.py checks that both accept exactly the same
documents on every schema in `crmflow.rules.schema.PUBLISHED`.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

# Keywords that assert nothing (jsonschema checks `format` only when given a format
# checker, which crmflow does not pass).
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "$anchor",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "markdownDescription",
    }
)
COMPILED = frozenset(
    {
        "type",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "properties",
        "additionalProperties",
        "required",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "$ref",
    }
)

# jsonschema's draft 2020-12 type checker, as Python expressions over `x`.
_TYPES = {
    "object": "isinstance(x, dict)",
    "array": "isinstance(x, list)",
    "string": "isinstance(x, str)",
    "boolean": "isinstance(x, bool)",
    "null": "x is None",
    "number": "(isinstance(x, _Number) and not isinstance(x, bool))",
    "integer": "(isinstance(x, int) and not isinstance(x, bool)"
    " or isinstance(x, float) and x.is_integer())",
}


class Unsupported(ValueError):
    """The schema uses a keyword or reference this compiler does not implement."""


def compile_schema(schema: Mapping[str, Any] | bool) -> Check:
    """A function telling whether an instance is valid against `schema`."""
    generator = _Generator(schema)
    entry = generator.function(schema)
    namespace = generator.namespace()
    exec(compile("\n".join(generator.lines), "<crmflow schema>", "exec"), namespace)
    for value in namespace.values():
        if isinstance(value, _Deferred):
            value.bind(namespace)
    check: Check = namespace[entry]
    return check


def keywords_of(schema: Any) -> set[str]:
    """Every keyword used anywhere in `schema` (for the coverage test)."""
    found: set[str] = set()
    _collect(schema, found)
    return found


_SUBSCHEMA = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else")


def _collect(schema: Any, found: set[str]) -> None:
    if not isinstance(schema, dict):
        return
    found.update(schema)
    for keyword, value in schema.items():
        if keyword in ("properties", "$defs", "dependentSchemas", "patternProperties"):
            for sub in value.values():
                _collect(sub, found)
        elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in value:
                _collect(sub, found)
        elif keyword in _SUBSCHEMA:
            _collect(value, found)


class _Generator:
    """Writes one Python function per subschema; shared subschemas ($ref) once."""

    def __init__(self, root: Mapping[str, Any] | bool) -> None:
        self.root = root
        self.lines: list[str] = []
        self.names: dict[int, str] = {}
        self.constants: dict[str, Any] = {}
        self._keep: list[Any] = []  # subschemas named by id() must outlive the compile

    def namespace(self) -> dict[str, Any]:
        return {
            "_Number": numbers.Number,
            "_equal": equal,
            "_unique": unique,
            **self.constants,
        }

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def function(self, schema: Any) -> str:
        """The name of the function checking `schema`, writing it on first use."""
        key = id(schema)
        if key in self.names:
            return self.names[key]
        name = f"_v{len(self.names)}"
        self.names[key] = name
        self._keep.append(schema)
        if schema is True or schema == {}:
            self.lines += [f"def {name}(x):", "    return True", ""]
            return name
        if schema is False:
            self.lines += [f"def {name}(x):", "    return False", ""]
            return name
        if not isinstance(schema, dict):
            raise Unsupported(f"a schema must be an object or a boolean, not {schema!r}")
        unknown = set(schema) - COMPILED - ANNOTATIONS
        if unknown:
            raise Unsupported(f"keywords not compiled: {', '.join(sorted(unknown))}")
        body = self.body(schema)
        self.lines += [f"def {name}(x):", *body, "    return True", ""]
        return name

    def body(self, schema: dict[str, Any]) -> list[str]:
        out: list[str] = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if any(t not in _TYPES for t in types):
                raise Unsupported(f"type {schema['type']!r}")
            out.append(f"    if not ({' or '.join(_TYPES[t] for t in types)}):")
            out.append("        return False")
        if "enum" in schema:
            out += self.enum(schema["enum"])
        if "const" in schema:
            out.append(f"    if not _equal(x, {self.constant(schema['const'])}):")
            out.append("        return False")
        out += self.strings(schema)
        out += self.numbers(schema)
        out += self.arrays(schema)
        out += self.objects(schema)
        out += self.combinations(schema)
        if "$ref" in schema:
            target = self.function(self.resolve(schema["$ref"]))
            out += [f"    if not {target}(x):", "        return False"]
        return out

    def enum(self, values: list[Any]) -> list[str]:
        if all(isinstance(v, str) for v in values):
            # `equal` compares strings with ==, so a set lookup says the same faster.
            allowed = self.constant(frozenset(values))
            return [f"    if not (isinstance(x, str) and x in {allowed}):", "        return False"]
        listed = self.constant(tuple(values))
        return [f"    if not any(_equal(x, v) for v in {listed}):", "        return False"]

    def strings(self, schema: dict[str, Any]) -> list[str]:
        checks = []
        if "pattern" in schema:
            pattern = self.constant(re.compile(schema["pattern"]))
            checks.append(f"not {pattern}.search(x)")
        if "minLength" in schema:
            checks.append(f"len(x) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            checks.append(f"len(x) > {int(schema['maxLength'])}")
        return _guarded(_TYPES["string"], checks)

    def numbers(self, schema: dict[str, Any]) -> list[str]:
        checks = []
        for keyword, operator in (
            ("minimum", "<"),
            ("maximum", ">"),
            ("exclusiveMinimum", "<="),
            ("exclusiveMaximum", ">="),
        ):
            if keyword in schema:
                checks.append(f"x {operator} {self.constant(schema[keyword])}")
        return _guarded(_TYPES["number"], checks)

    def arrays(self, schema: dict[str, Any]) -> list[str]:
        checks = []
        if "minItems" in schema:
            checks.append(f"len(x) < {int(schema['minItems'])}")
        if "maxItems" in schema:
            checks.append(f"len(x) > {int(schema['maxItems'])}")
        if schema.get("uniqueItems") is True:
            checks.append("not _unique(x)")
        if "items" in schema:
            item = self.function(schema["items"])
            checks.append(f"not all(map({item}, x))")
        return _guarded(_TYPES["array"], checks)

    def objects(self, schema: dict[str, Any]) -> list[str]:
        checks = []
        for name in schema.get("required", []):
            checks.append(f"{self.constant(name)} not in x")
        if "minProperties" in schema:
            checks.append(f"len(x) < {int(schema['minProperties'])}")
        if "maxProperties" in schema:
            checks.append(f"len(x) > {int(schema['maxProperties'])}")
        for key, needed in schema.get("dependentRequired", {}).items():
            names = self.constant(tuple(needed))
            checks.append(f"{self.constant(key)} in x and not all(n in x for n in {names})")
        if "propertyNames" in schema:
            checks.append(f"not all(map({self.function(schema['propertyNames'])}, x))")
        out = _guarded(_TYPES["object"], checks)
        if "properties" in schema or "additionalProperties" in schema:
            out += self.members(schema)
        return out

    def members(self, schema: dict[str, Any]) -> list[str]:
        """`properties` and `additionalProperties` in one pass over the instance's keys."""
        known = {name: self.function(sub) for name, sub in schema.get("properties", {}).items()}
        # A table of names, bound to the functions once they exist (see compile_schema).
        table = self.constant(_Deferred(known))
        extra = schema.get("additionalProperties", True)
        lines = [
            f"    if {_TYPES['object']}:",
            f"        get = {table}.get",
            "        for k, v in x.items():",
            "            f = get(k)",
            "            if f is not None:",
            "                if not f(v):",
            "                    return False",
        ]
        if extra is False:
            lines += ["            else:", "                return False"]
        elif extra is not True and extra != {}:
            other = self.function(extra)
            lines += ["            elif not " + other + "(v):", "                return False"]
        return lines

    def combinations(self, schema: dict[str, Any]) -> list[str]:
        out = []
        if "allOf" in schema:
            calls = [f"{self.function(s)}(x)" for s in schema["allOf"]]
            out += [f"    if not ({' and '.join(calls)}):", "        return False"]
        if "anyOf" in schema:
            calls = [f"{self.function(s)}(x)" for s in schema["anyOf"]]
            out += [f"    if not ({' or '.join(calls)}):", "        return False"]
        if "oneOf" in schema:
            calls = [f"{self.function(s)}(x)" for s in schema["oneOf"]]
            out += [f"    if ({' + '.join(calls)}) != 1:", "        return False"]
        if "not" in schema:
            out += [f"    if {self.function(schema['not'])}(x):", "        return False"]
        if "if" in schema:
            condition = self.function(schema["if"])
            then = self.function(schema.get("then", True))
            otherwise = self.function(schema.get("else", True))
            out += [
                f"    if not ({then}(x) if {condition}(x) else {otherwise}(x)):",
                "        return False",
            ]
        return out

    def resolve(self, reference: str) -> Any:
        """A `$ref` within the root schema (`#` or a JSON pointer such as `#/$defs/x`)."""
        if not reference.startswith("#"):
            raise Unsupported(f"$ref {reference!r}: only references within the schema")
        target: Any = self.root
        pointer = reference[1:]
        if pointer and not pointer.startswith("/"):
            raise Unsupported(f"$ref {reference!r}: anchors are not compiled")
        for part in pointer.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                target = target[int(part)] if isinstance(target, list) else target[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise Unsupported(f"$ref {reference!r} points nowhere") from None
        return target


class _Deferred(dict[str, Any]):
    """A property table of function names, bound to the functions once they exist."""

    def bind(self, namespace: dict[str, Any]) -> None:
        for key, name in self.items():
            self[key] = namespace[name]


def _guarded(type_test: str, checks: list[str]) -> list[str]:
    """Checks that apply only to one JSON type, as jsonschema's keywords do."""
    if not checks:
        return []
    condition = " or ".join(f"({c})" for c in checks)
    return [f"    if {type_test} and ({condition}):", "        return False"]


def equal(one: Any, two: Any) -> bool:
    """jsonschema's equality: `True` is not `1`, and sequences and mappings compare deeply."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(equal(i, j) for i, j in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and equal(value, two[key]) for key, value in one.items()
        )
    return bool(_unbool(one) == _unbool(two))


_TRUE, _FALSE = object(), object()


def _unbool(element: Any) -> Any:
    if element is True:
        return _TRUE
    if element is False:
        return _FALSE
    return element


def unique(container: list[Any]) -> bool:
    """jsonschema's `uniqueItems` test, step for step (its sorted shortcut included)."""
    try:
        ordered = sorted(_unbool(i) for i in container)
        return not any(
            equal(i, j) for i, j in zip(ordered, itertools.islice(ordered, 1, None), strict=False)
        )
    except (NotImplementedError, TypeError):
        seen: list[Any] = []
        for element in container:
            element = _unbool(element)
            if any(equal(i, element) for i in seen):
                return False
            seen.append(element)
        return True
