"""Loading a rules folder: files -> documents -> checks -> compiled, indexed workflows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crmflow.errors import ConfigError, WorkflowError, YamlError
from crmflow.findings import Finding
from crmflow.rules.triggers import EVENT_KINDS
from crmflow.rules.workflow import Workflow
from crmflow.rules.yamlload import Document, iter_yaml_files, load_file

if TYPE_CHECKING:
    # Only a parameter type: configuration is loaded a layer above the rules.
    from crmflow.config import Config


@dataclass
class Loaded:
    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    files: int = 0


def load_documents(paths: Iterable[Path]) -> Loaded:
    """Every workflow document under `paths`; unreadable files become findings."""
    loaded = Loaded()
    path_list = list(paths)
    for root in path_list:
        if not root.exists():
            raise ConfigError(f"{root}: no such file or folder")
    for file in iter_yaml_files(path_list):
        loaded.files += 1
        add_documents(loaded, lambda file=file: load_file(file))
    return loaded


def add_documents(loaded: Loaded, load: Callable[[], list[Document]]) -> None:
    """The documents `load` gives added to `loaded`; what cannot be loaded, a finding."""
    from crmflow.errors import Location

    try:
        docs = load()
    except YamlError as exc:
        assert exc.location is not None
        loaded.findings.append(Finding(exc.code or "CF001", "error", exc.message, exc.location))
        return
    for doc in docs:
        if not isinstance(doc.data, dict):
            loaded.findings.append(
                Finding(
                    "CF003",
                    "error",
                    "a workflow document must be a mapping (id, entity, trigger, actions)",
                    Location(doc.file, doc.line, doc.column),
                )
            )
            continue
        loaded.documents.append(doc)


def check(loaded: Loaded, config: Config, *, full: bool) -> list[Finding]:
    """Schema findings and semantic findings; `full` adds the checks only lint needs."""
    from crmflow.rules.semantics import across_findings, summary_of

    findings, valid = check_each(loaded, config, full=full)
    summaries = [summary_of(doc, config.model) for doc in valid]
    findings.extend(across_findings(summaries, full=full))
    findings.sort(key=lambda f: f.sort_key)
    return findings


def check_each(
    loaded: Loaded, config: Config, *, full: bool
) -> tuple[list[Finding], list[Document]]:
    """The findings of each document on its own (not those across workflows), and the
    documents the schema accepts."""
    from crmflow.rules.semantics import document_findings
    from crmflow.rules.validcache import default_cache

    cache = default_cache()
    findings = list(loaded.findings)
    valid: list[Document] = []
    for doc in loaded.documents:
        key = cache.key("workflow", doc.data)
        if not cache.known(key):
            from crmflow.rules.validate import schema_findings

            problems = schema_findings(doc)
            findings.extend(problems)
            if problems:
                # Lint goes on with the rest of the document, so one run shows every
                # mistake; a load (full=False) refuses the document anyway.
                if full:
                    paths = _refused_paths(doc)
                    findings.extend(document_findings(doc, config, full=True, refused=paths))
                continue
            cache.remember(key)
        valid.append(doc)
        findings.extend(document_findings(doc, config, full=full))
    return findings, valid


def _refused_paths(doc: Document) -> list[tuple[str | int, ...]]:
    """Where the schema refuses a document, as raw paths (the parts to leave out)."""
    from crmflow.rules.validate import reduced_paths

    return reduced_paths(doc)


@dataclass(frozen=True, slots=True)
class Entry:
    """A workflow as seen from one (entity, event): whether its trigger takes the event."""

    workflow: Workflow
    reacts: bool
    static_reason: str = ""


class RuleSet:
    """Compiled workflows, indexed by (entity, event) so an event only costs what can match.

    A pure index: what is compiled per time zone (the bucket matchers) is kept by the
    Evaluator, which has one.
    """

    def __init__(self, workflows: Iterable[Workflow]) -> None:
        self.workflows: tuple[Workflow, ...] = tuple(workflows)
        self.by_id = {w.id: w for w in self.workflows}
        # Whether any workflow's match depends on more than the event (date triggers,
        # cooldowns): the fast matcher leaves those to the evaluator.
        self.needs_state = any(w.depends_on_state for w in self.workflows)
        self._index: dict[tuple[str, str], tuple[Entry, ...]] = {}
        # Held as long as the rules: a workflow's one reacting Entry serves every event
        # its trigger takes, and each static reason is one string for all the workflows
        # whose triggers word it alike.
        reacting: dict[int, Entry] = {}
        reasons: dict[tuple[str, frozenset[str], str], str] = {}
        for entity in {w.entity for w in self.workflows}:
            for kind in EVENT_KINDS:
                entries = []
                for w in self.workflows:
                    if w.entity != entity or not w.enabled:
                        continue
                    if kind in w.trigger.events:
                        entry = reacting.get(id(w))
                        if entry is None:
                            entry = reacting[id(w)] = Entry(w, True)
                        entries.append(entry)
                    else:
                        key = (w.trigger.describe, w.trigger.events, kind)
                        reason = reasons.get(key)
                        if reason is None:
                            takes = ", ".join(sorted(w.trigger.events))
                            reason = reasons[key] = (
                                f"trigger {w.trigger.describe}: reacts to {takes}, not {kind}"
                            )
                        entries.append(Entry(w, False, reason))
                self._index[(entity, kind)] = tuple(entries)

    def entries(self, entity: str, event: str) -> tuple[Entry, ...]:
        return self._index.get((entity, event), ())

    def __len__(self) -> int:
        return len(self.workflows)


def compile_documents(documents: Iterable[Document], config: Config) -> RuleSet:
    from crmflow.rules.compiler import Shared, compile_workflow

    # One Shared for the load: equal parts of its workflows are one object each.
    shared = Shared(config.timezone)
    return RuleSet(compile_workflow(doc, config.timezone, shared) for doc in documents)


def load_valid_documents(
    paths: Iterable[Path], config: Config, *, full: bool = False
) -> list[Document]:
    """The workflow documents under `paths`; WorkflowError when any workflow is invalid.

    `full` runs every check `crmflow lint` runs (what goes live in the daemon must pass
    them); without it, the checks that evaluating an event needs.
    """
    loaded = load_documents(paths)
    errors = [f for f in check(loaded, config, full=full) if f.severity == "error"]
    if errors:
        raise WorkflowError(errors)
    return loaded.documents


def load_ruleset(paths: Iterable[Path], config: Config, *, full: bool = False) -> RuleSet:
    """The compiled rules under `paths`; WorkflowError when any workflow is invalid."""
    return compile_documents(load_valid_documents(paths, config, full=full), config)
