"""YAML loading with the YAML 1.2 core schema and every node's position kept.

PyYAML resolves YAML 1.1 scalars (`on` is True, `9:00` is 540, `010` is 8); workflow
files follow the 1.2 core schema instead, so the resolver here is our own and nodes are
converted to plain Python by hand. That also lets us reject duplicate keys and remember
where each value and key stood, so any later error can name `file:line:col`.

Workflow files, crmflow.yaml and test files all load here, so the bounds that keep a
hostile file from hanging a command or exhausting memory (SPEC §9) live here too. Each is
reported as one finding, `file:line:col: CF004 ...`, and the other files are still read:

- a file is at most `MAX_FILE_BYTES` (10 MiB) long; a longer one is refused before reading;
- a document has at most `MAX_NODES` (100,000) nodes, counting every node an alias brings
  in again: a "billion laughs" file stops after 100,000 nodes instead of expanding;
- values nest at most `MAX_DEPTH` (100) collections deep, aliases included, so no later
  stage can run out of stack;
- an integer has at most `MAX_INT_DIGITS` (4,300) decimal digits, Python's own limit for
  turning text into an int; a float literal must be finite unless written `.inf`.

Text that is not UTF-8 or holds characters YAML forbids (NUL and other controls) is a
CF001 finding naming the position of the first bad byte or character.
"""

from __future__ import annotations

import gc
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

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 100
MAX_INT_DIGITS = 4_300
LIMIT_CODE = "CF004"

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_SEQ = _TAG + "seq"
_MAP = _TAG + "map"
# Plain (unquoted, untagged) scalars get this private tag while composing and are resolved
# by the core schema only when converted: resolving once, not in both places, is faster.
_PLAIN = "!crmflow-plain"
_NULL_RE = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
# Only plain scalars starting with one of these can be anything but a string.
_NUMBER_START = frozenset("0123456789+-.")
_NULL_START = frozenset("~nN")
_BOOL_START = frozenset("tTfF")
# Hex and octal literals have no digit limit in int(), but the value must still print.
_INT_BOUND = 10**MAX_INT_DIGITS

Path_ = tuple[str | int, ...]


class _LimitExceeded(Exception):
    """Raised from inside the composer (which knows no file name) to stop it at once."""

    def __init__(self, node: Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _CoreResolver(yaml.resolver.BaseResolver):
    """Tag scalars for the YAML 1.2 core schema, and bound the size and depth of a document.

    The composer calls `descend_resolver`/`ascend_resolver` around every node it builds
    (aliases excepted), so counting there stops a huge or deep document while it is read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.nodes = 0

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:  # type: ignore[override]
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        self.depth += 1
        self.nodes += 1
        if self.depth > MAX_DEPTH:
            raise _LimitExceeded(current_node, _depth_message())
        if self.nodes > MAX_NODES:
            raise _LimitExceeded(current_node, _nodes_message(""))

    def ascend_resolver(self) -> None:
        self.depth -= 1


def _depth_message() -> str:
    return f"document nests deeper than {MAX_DEPTH} levels (the limit)"


def _nodes_message(how: str) -> str:
    return f"document has more than {MAX_NODES:,} nodes{how} (the limit)"


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
    # The loader builds trees without cycles, so the cycle collector has nothing to find
    # here; left on, its passes over the growing tree made one 2 MB document load 3x slower.
    collecting = gc.isenabled()
    gc.disable()
    try:
        while composer.check_node():
            composer.nodes = 0
            composer.depth = 0
            node = composer.get_node()
            if node is None:
                continue
            doc = Document(file, index, None, node.start_mark.line + 1, node.start_mark.column + 1)
            doc.data = _Converter(doc).convert(node, ())
            index += 1
            if doc.data is not None:
                documents.append(doc)
    except _LimitExceeded as exc:
        line, col = _pos(exc.node) if exc.node is not None else (1, 1)
        raise YamlError(Location(file, line, col), exc.message, LIMIT_CODE) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:
            # libyaml's own bound (1,000 levels) can trip before ours when it reads ahead.
            raise YamlError(Location(file, line, col), _depth_message(), LIMIT_CODE) from None
        raise YamlError(Location(file, line, col), f"invalid YAML: {_one_line(problem)}") from None
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids (NUL, other controls): name where it stands.
        line, col = _line_col(text, exc.position)
        raise YamlError(
            Location(file, line, col),
            f"invalid YAML: character {_codepoint(exc.character)} is not allowed",
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(Location(file, 1, 1), f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:  # pragma: no cover - only the pure-Python composer recurses
        raise YamlError(Location(file, 1, 1), _depth_message(), LIMIT_CODE) from None
    finally:
        if collecting:
            gc.enable()
        dispose = getattr(composer, "dispose", None)
        if dispose:
            dispose()
    return documents


def load_file(path: Path | str) -> list[Document]:
    """The documents of one file; YamlError for unreadable, oversized or invalid files."""
    name = str(path)
    try:
        with open(path, "rb") as stream:
            # Read one byte past the limit rather than trusting the size on disk: a file
            # can grow between a stat and the read.
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlError(Location(name, 1, 1), f"cannot read file: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlError(
            Location(name, 1, 1),
            f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB (the limit)",
            LIMIT_CODE,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(Location(name, line, column), "file is not UTF-8 text") from None
    return load_text(text, name)


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _codepoint(character: int | str) -> str:
    # libyaml reports the character as a number, PyYAML's reader as a string.
    number = character if isinstance(character, int) else ord(character[:1] or "\0")
    return f"U+{number:04X}"


def _one_line(message: str) -> str:
    return " ".join(message.split())


class _Converter:
    """Turns one document's node graph into plain Python, recording positions.

    Counts every node it converts, so a node reached through many aliases counts each
    time: that is what bounds alias expansion.
    """

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.positions = doc.positions
        self.key_positions = doc.key_positions
        self.budget = MAX_NODES
        self.active: set[int] = set()

    def convert(self, node: Node, path: Path_) -> Any:
        mark = node.start_mark
        self.positions[path] = (mark.line + 1, mark.column + 1)
        self.budget -= 1
        if self.budget < 0:
            # Name the top-level entry being expanded: the node at hand is usually deep
            # inside the first anchor, which is not where the expansion was asked for.
            line, col = self.positions.get(path[:1], (mark.line + 1, mark.column + 1))
            raise YamlError(
                Location(self.doc.file, line, col),
                _nodes_message(" once aliases are expanded"),
                LIMIT_CODE,
            )
        if type(node) is ScalarNode:
            return self.scalar(node)
        # Depth is checked here as well as while composing: aliases can nest a subtree
        # below another, deeper than either was written.
        if len(path) >= MAX_DEPTH:
            raise YamlError(self._at(node), _depth_message(), LIMIT_CODE)
        key_id = id(node)
        if key_id in self.active:
            raise YamlError(self._at(node), "recursive alias is not supported")
        self.active.add(key_id)
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    raise YamlError(self._at(node), f"unsupported tag {node.tag}")
                convert = self.convert
                items = []
                for i, item in enumerate(node.value):
                    items.append(convert(item, (*path, i)))
                return items
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(key_id)
        raise YamlError(self._at(node), "unsupported YAML node")  # pragma: no cover

    def mapping(self, node: MappingNode, path: Path_) -> dict[str, Any]:
        if node.tag != _MAP:
            raise YamlError(self._at(node), f"unsupported tag {node.tag}")
        result: dict[str, Any] = {}
        key_path = (*path, "<key>")
        for key_node, value_node in node.value:
            key = self.convert(key_node, key_path)
            if not isinstance(key, str):
                raise YamlError(
                    self._at(key_node),
                    f"mapping keys must be strings, not {_short_repr(key)} (quote it)",
                )
            value_path = (*path, key)
            if key in result:
                first = self.key_positions[value_path]
                raise YamlError(
                    self._at(key_node),
                    f"duplicate key {_short_repr(key)} (first defined at line {first[0]})",
                    code="CF002",
                )
            mark = key_node.start_mark
            self.key_positions[value_path] = (mark.line + 1, mark.column + 1)
            result[key] = self.convert(value_node, value_path)
        self.positions.pop(key_path, None)
        return result

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        value: str = node.value
        if tag == _STR:
            return value
        if tag == _PLAIN:
            return self.plain(node, value)
        if tag == _TAG + "null":
            if _NULL_RE.fullmatch(value):
                return None
        elif tag == _TAG + "bool":
            if value in _BOOL:
                return _BOOL[value]
        elif tag == _TAG + "int":
            if _INT_RE.fullmatch(value):
                return self.integer(node, value)
        elif tag == _TAG + "float":
            if _FLOAT_RE.fullmatch(value):
                return self.real(node, value)
        else:
            raise YamlError(self._at(node), f"unsupported tag {tag}")
        raise YamlError(self._at(node), f"{_short_repr(value)} is not a valid {tag[len(_TAG) :]}")

    def plain(self, node: ScalarNode, value: str) -> Any:
        """An unquoted scalar by the YAML 1.2 core schema (the first character decides most)."""
        if not value:
            return None
        first = value[0]
        if first in _NUMBER_START:
            if _INT_RE.fullmatch(value):
                return self.integer(node, value)
            if _FLOAT_RE.fullmatch(value):
                return self.real(node, value)
        elif first in _NULL_START:
            if _NULL_RE.fullmatch(value):
                return None
        elif first in _BOOL_START and value in _BOOL:
            return _BOOL[value]
        return value

    def integer(self, node: ScalarNode, value: str) -> int:
        if value.startswith("0o"):
            number = int(value[2:], 8)
        elif value.startswith("0x"):
            number = int(value[2:], 16)
        else:
            sign = "-" if value[0] == "-" else ""
            # Leading zeros count towards int()'s limit too, though they add nothing.
            digits = value.lstrip("+-").lstrip("0") or "0"
            # int() refuses longer decimal strings with a ValueError; say so as a finding.
            if len(digits) > MAX_INT_DIGITS:
                raise YamlError(self._at(node), _int_message(), LIMIT_CODE)
            number = int(sign + digits)
        if abs(number) >= _INT_BOUND:
            raise YamlError(self._at(node), _int_message(), LIMIT_CODE)
        return number

    def real(self, node: ScalarNode, value: str) -> float:
        lowered = value.lower()
        if lowered.endswith("inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered.endswith("nan"):
            return math.nan
        number = float(value)
        if math.isinf(number):
            # `1e999` is infinite by accident; `.inf` is how YAML says it on purpose.
            raise YamlError(
                self._at(node), f"number {_short_repr(value)} is out of range", LIMIT_CODE
            )
        return number

    def _at(self, node: Node) -> Location:
        return doc_location(self.doc, node)


def _int_message() -> str:
    return f"integer has more than {MAX_INT_DIGITS:,} digits (the limit)"


def _short_repr(value: Any) -> str:
    """repr() for a message, cut short: a scalar in a hostile file can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def doc_location(doc: Document, node: Node) -> Location:
    line, col = _pos(node)
    return Location(doc.file, line, col)


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
