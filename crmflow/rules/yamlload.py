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
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
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
# The plain scalars that are null or booleans, besides the empty one.
_WORDS: dict[str, bool | None] = {"~": None, "null": None, "Null": None, "NULL": None, **_BOOL}
# How `Marks` packs a position into one integer, and how long a container may be before
# lookups into it get an index of its own.
_COLUMN_BITS = 32
_COLUMN_MASK = (1 << _COLUMN_BITS) - 1
_SCAN_LIMIT = 32
# Texts up to this long are interned: keys and words like `deal` or `updated` repeat in
# every workflow, and compiled workflows keep their data (a third of their memory).
_SHARED_LENGTH = 40
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


class Marks:
    """Where every node of one document stood, in two flat arrays rather than a dict per node.

    Nodes are numbered in the order the loader meets them (a mapping, then each key
    followed by its value's subtree). `pos[i]` packs node i's 0-based line and column;
    `end[i]` is the number just past its subtree, so siblings are found by skipping.
    Twelve bytes a node keep memory linear and small: a dict of path tuples cost over
    300. Lookups follow the document's data, whose shape the numbering mirrors.
    """

    __slots__ = ("_children", "end", "pos")

    def __init__(self) -> None:
        self.pos = array("q")
        self.end = array("i")
        # Child numbers of large containers, built on the first lookup into them, so that
        # many findings in one long list do not rescan it each time.
        self._children: dict[int, Any] = {}

    def at(self, index: int) -> tuple[int, int]:
        packed = self.pos[index]
        return (packed >> _COLUMN_BITS) + 1, (packed & _COLUMN_MASK) + 1

    def find(self, data: Any, path: Path_, key: bool) -> int:
        """The number of the node at `path` (its key's with `key`), or of its nearest parent."""
        index, node = 0, data
        last = len(path) - 1
        for depth, part in enumerate(path):
            found = self._child(index, node, part)
            if found is None:
                break
            key_index, index = found
            if key and depth == last and key_index >= 0:
                return key_index
            node = node[part]
        return index

    def _child(self, index: int, node: Any, part: Any) -> tuple[int, int] | None:
        """(key number or -1, value number) of `node[part]`, None when it is not there."""
        if isinstance(node, dict):
            if not isinstance(part, str) or part not in node:
                return None
            children = self._children_of(index, node)
            if isinstance(children, dict):
                key_index = children.get(part, -1)
            else:
                key_index = self._scan_mapping(index, node, part)
            return None if key_index < 0 else (key_index, key_index + 1)
        if isinstance(node, list):
            if type(part) is not int or not 0 <= part < len(node):
                return None
            children = self._children_of(index, node)
            if children is None:
                j, stop, end = index + 1, self.end[index], self.end
                for _ in range(part):
                    j = end[j]
                    if j >= stop:
                        return None
                return -1, j
            return (-1, children[part]) if part < len(children) else None
        return None

    def _scan_mapping(self, index: int, node: dict[str, Any], part: str) -> int:
        j, stop, end = index + 1, self.end[index], self.end
        for name in node:
            if j + 1 >= stop:
                return -1  # the data no longer has the shape it was loaded with
            if name == part:
                return j
            j = end[j + 1]
        return -1

    def _children_of(self, index: int, node: dict[str, Any] | list[Any]) -> Any:
        if len(node) <= _SCAN_LIMIT:
            return None
        cached = self._children.get(index)
        if cached is None:
            cached = self._index_children(index, node)
            self._children[index] = cached
        return cached

    def _index_children(self, index: int, node: dict[str, Any] | list[Any]) -> Any:
        j, stop, end = index + 1, self.end[index], self.end
        if isinstance(node, dict):
            keys: dict[str, int] = {}
            for name in node:
                if j + 1 >= stop:
                    break
                keys[name] = j
                j = end[j + 1]
            return keys
        starts = array("i")
        while j < stop:
            starts.append(j)
            j = end[j]
        return starts


@dataclass
class Document:
    """One YAML document: its data and where each part of it stood."""

    file: str
    index: int
    data: Any
    line: int = 1
    column: int = 1
    marks: Marks | None = field(default=None, repr=False, compare=False)

    def locate(self, path: Path_ = (), *, key: bool = False) -> Location:
        """The position of the value (or, with `key`, the key) at `path`, or its nearest parent."""
        if self.marks is None:
            return Location(self.file, self.line, self.column)
        line, col = self.marks.at(self.marks.find(self.data, tuple(path), key))
        return Location(self.file, line, col)


def load_text(text: str, file: str = "<string>", first_line: int = 1) -> list[Document]:
    """All non-empty documents of a YAML stream; YamlError names the position of a problem.

    `first_line` is where the text stands in its file, when it is a piece of a stream
    (split_stream); positions count from there.
    """
    if first_line > 1:
        # Blank lines cost the parser next to nothing and keep every position right.
        text = "\n" * (first_line - 1) + text
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
            doc = Document(file, index, None, *_pos(node), marks=Marks())
            doc.data = _Converter(doc).convert(node, 0)
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
    return load_text(read_text(path), str(path))


def read_text(path: Path | str) -> str:
    """A YAML file's text; YamlError for unreadable, oversized or undecodable files."""
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
    return text


# A line that starts a document: `---` at the start of a line, then a space or the end
# of the line. YAML forbids such a line inside any scalar or collection, so a stream can
# be cut there without parsing it.
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


def split_stream(text: str, parts: int) -> list[tuple[int, str]]:
    """A multi-document stream cut into about `parts` pieces of whole documents, each with
    the line it starts on, to be loaded apart. Directives (`%YAML`, `%TAG`) belong to the
    document after them, so a stream that has any is left whole."""
    if parts < 2 or re.search(r"^%", text, re.MULTILINE):
        return [(1, text)]
    starts = [m.start() for m in _DOCUMENT_START.finditer(text)]
    cuts: list[int] = []
    for k in range(1, parts):
        target = len(text) * k // parts
        after = [p for p in starts if p >= target and (not cuts or p > cuts[-1])]
        if after:
            cuts.append(after[0])
    pieces = []
    begin = 0
    line = 1
    for cut in [*cuts, len(text)]:
        if cut > begin:
            pieces.append((line, text[begin:cut]))
            line += text.count("\n", begin, cut)
        begin = cut
    return pieces or [(1, text)]


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
    """Turns one document's node graph into plain Python, numbering nodes for `Marks`.

    Counts every node it converts (each takes one number), so a node reached through
    many aliases counts each time: that is what bounds alias expansion. Each alias is
    expanded into objects of its own, so no later stage can change two places by
    changing one.
    """

    def __init__(self, doc: Document) -> None:
        assert doc.marks is not None
        self.doc = doc
        self.marks = doc.marks
        self.pos = doc.marks.pos
        self.end = doc.marks.end
        # The containers being converted: only an alias to one of them can recurse.
        self.stack: list[Node] = []

    def convert(self, node: Node, depth: int) -> Any:
        """The value of `node`; every scalar child is handled inline, as most nodes are."""
        index = self._number(node)
        if type(node) is ScalarNode:
            self.end.append(index + 1)
            return self.scalar(node)
        self.end.append(0)  # the end of the subtree is known once it is converted
        # Depth is checked here as well as while composing: aliases can nest a subtree
        # below another, deeper than either was written, or inside itself.
        if depth >= MAX_DEPTH:
            self._refuse_recursion(node)
            raise YamlError(self._at(node), _depth_message(), LIMIT_CODE)
        self.stack.append(node)
        if isinstance(node, SequenceNode):
            result: Any = self.sequence(node, depth + 1)
        elif isinstance(node, MappingNode):
            result = self.mapping(node, depth + 1)
        else:  # pragma: no cover - the composer builds only these three kinds
            raise YamlError(self._at(node), "unsupported YAML node")
        self.stack.pop()
        self.end[index] = len(self.pos)
        return result

    def _number(self, node: Node) -> int:
        """Give `node` the next number and record its position (the node limit lives here)."""
        index = len(self.pos)
        if index >= MAX_NODES:
            self._too_many(node)
        mark = node.start_mark
        self.pos.append(mark.line << _COLUMN_BITS | mark.column)
        return index

    def child(self, node: Node, depth: int) -> Any:
        """convert() with a plain word or quoted text done here: the bulk of every file."""
        if type(node) is ScalarNode and len(self.pos) < MAX_NODES:
            tag = node.tag
            value: str = node.value
            plain = tag == _PLAIN
            if (plain and value and value[0] not in _NUMBER_START) or tag == _STR:
                mark = node.start_mark
                index = len(self.pos)
                self.pos.append(mark.line << _COLUMN_BITS | mark.column)
                self.end.append(index + 1)
                if plain and value in _WORDS:
                    return _WORDS[value]
                if len(value) <= _SHARED_LENGTH:
                    return intern(value)
                return value
        return self.convert(node, depth)

    def sequence(self, node: SequenceNode, inner: int) -> list[Any]:
        if node.tag != _SEQ:
            raise YamlError(self._at(node), f"unsupported tag {node.tag}")
        child = self.child
        return [child(item, inner) for item in node.value]

    def mapping(self, node: MappingNode, inner: int) -> dict[str, Any]:
        if node.tag != _MAP:
            raise YamlError(self._at(node), f"unsupported tag {node.tag}")
        child = self.child
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = child(key_node, inner)
            if type(key) is not str:
                raise YamlError(
                    self._at(key_node),
                    f"mapping keys must be strings, not {_short_repr(key)} (quote it)",
                )
            if key in result:
                first = next(k for k, _ in node.value if k.value == key)
                raise YamlError(
                    self._at(key_node),
                    f"duplicate key {_short_repr(key)} "
                    f"(first defined at line {first.start_mark.line + 1})",
                    code="CF002",
                )
            result[key] = child(value_node, inner)
        return result

    def _too_many(self, node: Node) -> None:
        self._refuse_recursion(node)
        # Name the top-level entry being expanded: the node at hand is usually deep inside
        # the first anchor, which is not where the expansion was asked for. That entry is
        # the first top-level node whose subtree is still open (its end not yet set).
        end, index = self.end, len(self.end)
        entry = 1
        while entry < index and end[entry]:
            entry = end[entry]
        line, col = self.marks.at(entry) if entry < index else _pos(node)
        raise YamlError(
            Location(self.doc.file, line, col),
            _nodes_message(" once aliases are expanded"),
            LIMIT_CODE,
        )

    def _refuse_recursion(self, node: Node) -> None:
        """Say so when an alias points into its own anchor.

        Such an alias expands without end, so it always ends at the depth or the node
        limit; only then is the stack searched, which keeps the search off the hot path.
        """
        seen: set[int] = set()
        for active in (*self.stack, node):
            if id(active) in seen:
                raise YamlError(self._at(active), "recursive alias is not supported")
            seen.add(id(active))

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
