"""The command line: a thin edge over the library.

Each command parses its options, calls one library function, and turns library errors
into one line on stderr and the exit code of the contract. Modules load inside the
commands so `crmflow eval` pays only for what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from crmflow import __version__

app = typer.Typer(
    name="crmflow",
    help="CRM workflow automation as files: lint, test, evaluate and run workflows.\n\n"
    "Workflows are YAML files in a rules folder; crmflow.yaml in the working "
    "directory says where the CRM, the state and the rules are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="crmflow.yaml to use (default: ./crmflow.yaml).", show_default=False
    ),
]


class LintFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class PlanFormat(StrEnum):
    text = "text"
    json = "json"


def _fail(message: str, code: int) -> typer.Exit:
    print(f"crmflow: {message}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def _guard() -> Iterator[None]:
    """Library errors become one line on stderr and their exit code; never a traceback."""
    from crmflow.errors import CrmflowError

    try:
        yield
    except CrmflowError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except BrokenPipeError:
        # `crmflow eval ... | head`: the reader left; stop quietly.
        sys.stderr.close()
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:
        # A bug, not a user error: one line by default, the traceback on request.
        import os

        if os.environ.get("CRMFLOW_DEBUG"):
            raise
        raise _fail(
            f"internal error: {type(exc).__name__}: {exc} (set CRMFLOW_DEBUG=1 for the traceback)",
            70,
        ) from None


def _rule_paths(paths: list[Path] | None, config_rules: list[Path]) -> list[Path]:
    return list(paths) if paths else config_rules


@app.command()
def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Workflow files or folders (searched recursively). Default: the configured "
            "rules folder.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        LintFormat,
        typer.Option("--format", "-f", help="text, json, or github (Actions annotations)."),
    ] = LintFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Check workflow files: YAML, schema, then semantics (fields, templates, cron...).

    Each finding prints as `file:line:col: CODE message`. Exit 0 when clean or only
    warnings, 1 when there are errors (--strict: warnings too), 2 on usage errors.
    """
    from crmflow.config import load_config
    from crmflow.lint import lint_paths, render

    with _guard():
        config = load_config(config_path)
        report = lint_paths(_rule_paths(paths, config.rules), config)
        output = render(report, fmt.value)
        if output:
            print(output)
        raise typer.Exit(report.exit_code(strict))


@app.command("eval")
def eval_(
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules",
            "-r",
            help="Rules folder or file (repeatable). Default: the configured one.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only plan: no database write, no e-mail, no HTTP, no state."
        ),
    ] = False,
    fmt: Annotated[
        PlanFormat,
        typer.Option(
            "--format", "-f", help="text for people, json for programs (one object per event)."
        ),
    ] = PlanFormat.text,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="ISO date-time for events without `at` (default: the clock).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed generated codes so they repeat.", show_default=False),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every condition clause and its result.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Evaluate events read from stdin: one JSON object, or one per line (NDJSON).

    Example:

        echo '{"entity": "deal", "event": "created", "record": {"id": 1, "amount": 5}}' \\
          | crmflow eval --dry-run

    Exit 0 when every event was evaluated, 2 when some input was invalid (reported on
    stderr with its line number; the other events are still evaluated), 3 when an
    action failed.
    """
    from crmflow.config import load_config
    from crmflow.errors import ConfigError
    from crmflow.eval_stream import run_eval

    with _guard():
        config = load_config(config_path)
        if not dry_run and config.crm is None:
            raise ConfigError(
                "no CRM is configured (no `crm` in crmflow.yaml), so only "
                "--dry-run is possible until one is"
            )
        code = run_eval(
            config,
            _rule_paths(rules, config.rules),
            sys.stdin,
            sys.stdout,
            dry_run=dry_run,
            fmt=fmt.value,
            now=now,
            seed=seed,
            explain=explain,
        )
        raise typer.Exit(code)


@app.command("test")
def test_(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders or files holding workflows and their *.test.yaml files. Default: the "
            "configured rules folder.",
            show_default=False,
        ),
    ] = None,
    junit_xml: Annotated[
        Path | None,
        typer.Option(
            "--junit-xml",
            help="Also write the results as JUnit XML to this file.",
            show_default=False,
        ),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Run workflow test cases (*.test.yaml beside the workflows).

    Each case gives an event (or several) and the plan it expects; the summary line is
    `N passed, M failed`. Exit 0 when all pass, 1 otherwise.
    """
    from crmflow.config import load_config
    from crmflow.testing import run_tests

    with _guard():
        config = load_config(config_path)
        code = run_tests(config, _rule_paths(paths, config.rules), sys.stdout, junit_xml)
        raise typer.Exit(code)


class SchemaName(StrEnum):
    workflow = "workflow"
    config = "config"
    test = "test"


@app.command()
def schema(
    which: Annotated[
        SchemaName, typer.Argument(help="workflow, config or test.")
    ] = SchemaName.workflow,
) -> None:
    """Print a JSON Schema (default: the workflow schema) for editors and CI."""
    from crmflow.schema import dump, schemas

    print(dump(schemas()[which.value]), end="")


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Where to create the demo CRM.")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing demo CRM (crm.db, crmflow.yaml).")
    ] = False,
) -> None:
    """Create a demo CRM: crm.db (SQLite, sample data), crmflow.yaml, rules/, mail/.

    Then try: `cd FOLDER && crmflow eval < event.json` and look into mail/new/.
    """
    from crmflow.demo import init_project

    with _guard():
        created = init_project(folder, force=force)
        for path in created:
            print(f"created {path}")
        print(f"\nnext: cd {folder} && crmflow lint && crmflow run")


@app.command()
def version() -> None:
    """Print crmflow's version."""
    print(f"crmflow {__version__}")


def main() -> None:
    app()
