"""YAML loading with the YAML 1.2 core schema and every node's position kept.

PyYAML resolves YAML 1.1 scalars (`on` is True, `9:00` is 540, `010` is 8); workflow
files follow the 1.2 core schema instead, so the resolver here is our own and nodes are
converted to plain Python by hand. That also lets us reject duplicate keys and remember
where each value and key stood, so any later error can name `file:line:col`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import yaml.cyaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from crmflow.errors import Location, YamlError

_TAG = "tag:yaml.org,2002:"
_NULL_RE = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)

Path_ = tuple[str | int, ...]


class _CoreResolver(yaml.resolver.BaseResolver):
    """Resolve plain scalars by the YAML 1.2 core schema; everything else is a string."""

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:  # type: ignore[override]
        if kind is ScalarNode:
            if not implicit[0]:
                return _TAG + "str"
            if _NULL_RE.fullmatch(value):
                return _TAG + "null"
            if value in _BOOL:
                return _TAG + "bool"
            if _INT_RE.fullmatch(value):
                return _TAG + "int"
            if _FLOAT_RE.fullmatch(value):
                return _TAG + "float"
            return _TAG + "str"
        if kind is SequenceNode:
            return _TAG + "seq"
        return _TAG + "map"


if getattr(yaml, "__with_libyaml__", False):

    class _Composer(yaml.cyaml.CParser, _CoreResolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            _CoreResolver.__init__(self)

else:  # pragma: no cover - libyaml ships with PyYAML's wheels

    class _Composer(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _CoreResolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _CoreResolver.__init__(self)


@dataclass
class Document:
    """One YAML document: its data and where each part of it stood."""

    file: str
    index: int
    data: Any
    line: int = 1
    column: int = 1
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path_ = (), *, key: bool = False) -> Location:
        """The position of the value (or, with `key`, the key) at `path`, or its nearest parent."""
        if key and path in self.key_positions:
            line, col = self.key_positions[path]
            return Location(self.file, line, col)
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                line, col = self.positions[probe]
                return Location(self.file, line, col)
            probe = probe[:-1]
        return Location(self.file, self.line, self.column)


def load_text(text: str, file: str = "<string>") -> list[Document]:
    """All non-empty documents of a YAML stream; YamlError names the position of a problem."""
    composer = _Composer(text)
    documents: list[Document] = []
    index = 0
    try:
        while composer.check_node():
            node = composer.get_node()
            if node is None:
                continue
            doc = Document(file, index, None, node.start_mark.line + 1, node.start_mark.column + 1)
            doc.data = _convert(node, (), doc, set())
            index += 1
            if doc.data is not None:
                documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(Location(file, line, col), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Location(file, 1, 1), f"invalid YAML: {exc}") from None
    finally:
        dispose = getattr(composer, "dispose", None)
        if dispose:
            dispose()
    return documents


def load_file(path: Path | str) -> list[Document]:
    """The documents of one file; YamlError for unreadable or invalid files."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError(Location(name, 1, 1), "file is not UTF-8 text") from None
    except OSError as exc:
        raise YamlError(Location(name, 1, 1), f"cannot read file: {exc.strerror}") from None
    return load_text(text, name)


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: Node, path: Path_, doc: Document, active: set[int]) -> Any:
    doc.positions[path] = _pos(node)
    if isinstance(node, ScalarNode):
        return _scalar(node, doc)
    if id(node) in active:
        raise YamlError(doc_location(doc, node), "recursive alias is not supported")
    active.add(id(node))
    try:
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                raise YamlError(doc_location(doc, node), f"unsupported tag {node.tag}")
            return [_convert(item, (*path, i), doc, active) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                raise YamlError(doc_location(doc, node), f"unsupported tag {node.tag}")
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _convert(key_node, (*path, "<key>"), doc, active)
                if not isinstance(key, str):
                    raise YamlError(
                        doc_location(doc, key_node),
                        f"mapping keys must be strings, not {key!r} (quote it)",
                    )
                if key in result:
                    first = doc.key_positions[(*path, key)]
                    raise YamlError(
                        doc_location(doc, key_node),
                        f"duplicate key {key!r} (first defined at line {first[0]})",
                        code="CF002",
                    )
                doc.key_positions[(*path, key)] = _pos(key_node)
                result[key] = _convert(value_node, (*path, key), doc, active)
            doc.positions.pop((*path, "<key>"), None)
            return result
    finally:
        active.discard(id(node))
    raise YamlError(doc_location(doc, node), "unsupported YAML node")  # pragma: no cover


def doc_location(doc: Document, node: Node) -> Location:
    line, col = _pos(node)
    return Location(doc.file, line, col)


def _scalar(node: ScalarNode, doc: Document) -> Any:
    tag = node.tag
    value = node.value
    if tag == _TAG + "str":
        return value
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        if value in _BOOL:
            return _BOOL[value]
    elif tag == _TAG + "int":
        if _INT_RE.fullmatch(value):
            if value.startswith("0o"):
                return int(value[2:], 8)
            if value.startswith("0x"):
                return int(value[2:], 16)
            return int(value, 10)
    elif tag == _TAG + "float":
        if _FLOAT_RE.fullmatch(value):
            lowered = value.lower()
            if lowered.endswith("inf"):
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered.endswith("nan"):
                return math.nan
            return float(value)
    else:
        raise YamlError(doc_location(doc, node), f"unsupported tag {tag}")
    raise YamlError(doc_location(doc, node), f"{value!r} is not a valid {tag[len(_TAG) :]}")


def iter_yaml_files(paths: list[Path], *, tests: bool = False) -> Iterator[Path]:
    """YAML files under `paths` (recursively), sorted; test files only when `tests`."""
    seen: set[Path] = set()
    for root in paths:
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        for candidate in candidates:
            if not candidate.is_file() or candidate.suffix not in (".yaml", ".yml"):
                continue
            if is_test_file(candidate) != tests:
                continue
            if candidate not in seen:
                seen.add(candidate)
                yield candidate


def is_test_file(path: Path) -> bool:
    return path.name.endswith((".test.yaml", ".test.yml"))
