"""The command line: a thin edge over the library.

Each command parses its options, calls one library function, and turns library errors
into one line on stderr and the exit code of the contract. Modules load inside the
commands so `crmflow eval` pays only for what it uses.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from crmflow import __version__

app = typer.Typer(
    name="crmflow",
    help="CRM workflow automation as files: lint, test, evaluate and run workflows.\n\n"
    "Workflows are YAML files in a rules folder; crmflow.yaml in the working "
    "directory says where the CRM, the state and the rules are. Start with "
    "`crmflow init demo`.",
    no_args_is_help=True,
    # --install-completion / --show-completion: Tab completion of commands and options for
    # bash, zsh, fish and PowerShell (the README shows how).
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"crmflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print crmflow's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Options before any command (the help text is the app's)."""


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


class Outcome(StrEnum):
    """The outcomes a history row may have."""

    fired = "fired"
    not_fired = "not_fired"
    scheduled = "scheduled"
    done = "done"
    failed = "failed"
    retried = "retried"
    skipped = "skipped"
    cancelled = "cancelled"
    found_late = "found_late"
    loop_stopped = "loop_stopped"
    shadow = "shadow"


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
        for line in exc.lines()[:-1]:
            print(f"crmflow: {line}", file=sys.stderr)
        raise _fail(exc.lines()[-1], exc.exit_code) from None
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


def _load_config(path: Path | None, *, required: bool = False) -> Any:
    """crmflow.yaml, with a `crm` that names a SQLite file refused when the file is missing."""
    from crmflow.config import load_config

    config = load_config(path, required=required)
    config.check_crm_file()
    return config


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

    Example: `crmflow lint --strict --format github rules/`
    """
    from crmflow.commands.lint import lint_paths, render

    with _guard():
        config = _load_config(config_path)
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

    Without --dry-run the actions are carried out against the configured CRM; that is
    refused (exit 2) while a daemon runs on the same state, which acts on the same
    changes itself.

    Exit 0 when every event was evaluated, 2 when some input was invalid (reported on
    stderr with its line number; the other events are still evaluated), 3 when an
    action failed.
    """
    from crmflow.commands.eval_stream import run_eval
    from crmflow.errors import ConfigError

    with _guard():
        config = _load_config(config_path)
        if not dry_run and config.crm is None:
            raise ConfigError(
                "no CRM is configured (no `crm` in crmflow.yaml), so only "
                "--dry-run is possible until one is"
            )
        with contextlib.ExitStack() as guards:
            if not dry_run:
                from crmflow.daemon.lock import no_daemon_beside
                from crmflow.timeutil import clock_from_env

                guards.enter_context(no_daemon_beside(config.state_url, clock_from_env()()))
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

    Example: `crmflow test rules/ --junit-xml report.xml`
    """
    from crmflow.commands.testing import run_tests

    with _guard():
        config = _load_config(config_path)
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
    """Print a JSON Schema (default: the workflow schema) for editors and CI.

    Example: `crmflow schema config > config.schema.json`
    """
    from crmflow.rules.schema import dump, schemas

    with _guard():
        print(dump(schemas()[which.value]), end="")


@app.command()
def entities(
    name: Annotated[
        str | None, typer.Argument(help="One entity; without it, every one.", show_default=False)
    ] = None,
    fmt: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text or json.")
    ] = PlanFormat.text,
    config_path: ConfigOption = None,
) -> None:
    """The entity model in use (built in, plus crmflow.yaml's `entities` mapping).

    Fields with their types (and columns where mapped), relations, pipelines and their
    stages: what conditions, templates and actions may name. Example: `crmflow entities
    deal`.
    """
    import json

    from crmflow.rules.entities import describe, describe_text, suggest

    with _guard():
        model = _load_config(config_path).model
        names = model.names()
        if name is not None and name not in names:
            raise _fail(f"no entity {name!r}{suggest(name, names)}; known: {', '.join(names)}", 2)
        chosen = [name] if name is not None else names
        if fmt == PlanFormat.json:
            print(json.dumps([describe(model.entities[n]) for n in chosen], ensure_ascii=False))
            return
        print("\n\n".join(describe_text(model.entities[n]) for n in chosen))


@app.command()
def profile(
    name: Annotated[
        str | None,
        typer.Argument(help="A profile to print; without it, the known ones are listed."),
    ] = None,
) -> None:
    """Mappings of real CRMs' databases (SuiteCRM, Odoo, ...), ready for crmflow.yaml.

    Example: `crmflow profile suitecrm >> crmflow.yaml`, then check it with `crmflow lint`
    and see what a first start would do with `crmflow run --backfill` (answer no).
    """
    from crmflow.crm import profiles

    with _guard():
        if name is None:
            for known in profiles.names():
                print(f"{known:12} {profiles.summary(known)}")
            return
        print(profiles.text(name), end="")


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Where to create the demo CRM.")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing demo CRM (crm.db, crmflow.yaml).")
    ] = False,
) -> None:
    """Create a demo CRM: crm.db (SQLite, sample data), crmflow.yaml, rules/, schemas/, mail/.

    Then try: `cd FOLDER && crmflow eval < event.json` and look into mail/new/.

    Example: `crmflow init demo && cd demo && crmflow run`
    """
    from crmflow.crm.demo import init_project

    with _guard():
        created = init_project(folder, force=force)
        for path in created:
            print(f"created {path}")
        print(f"\nnext: cd {folder} && crmflow lint && crmflow run")


class LogFormat(StrEnum):
    auto = "auto"
    plain = "plain"
    json = "json"
    rich = "rich"


def _daemon(
    config_path: Path | None,
    log_format: str = "plain",
    now: str | None = None,
    *,
    shadow: bool = False,
) -> Any:
    from crmflow.daemon.log import Log
    from crmflow.daemon.loop import Daemon
    from crmflow.timeutil import clock_from_env, frozen_clock, parse_instant

    config = _load_config(config_path, required=True)
    if shadow:
        config = config.shadow()
    if log_format == "auto":
        log_format = "rich" if sys.stdout.isatty() else "plain"
    clock = frozen_clock(parse_instant(now)) if now else clock_from_env()
    return Daemon(config, clock=clock, log=Log(log_format), shadow=shadow)


@app.command()
def run(
    backfill: Annotated[
        bool,
        typer.Option(
            "--backfill",
            help="On the first start, fire `created` workflows for existing "
            "records (after showing how many) instead of a silent baseline.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before a backfill.")] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format", help="auto (rich on a terminal, else plain), plain, json, rich."
        ),
    ] = LogFormat.auto,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="Serve /metrics (Prometheus), /healthz, /readyz and read-only pages on "
            "HOST:PORT, e.g. 127.0.0.1:9464.",
            show_default=False,
        ),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Watch the CRM and record what every action would do, acting on nothing "
            "(its own state: shadow_state:, else shadow.db beside the state).",
        ),
    ] = False,
    http_token: Annotated[
        str | None,
        typer.Option(
            "--http-token",
            envvar="CRMFLOW_HTTP_TOKEN",
            help="Bearer token the pages and /metrics require; needed to serve on any but "
            "a loopback address (best from $CRMFLOW_HTTP_TOKEN).",
            show_default=False,
        ),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Run the daemon: poll the CRM, fire workflows, carry out due actions.

    The first start takes a baseline and fires nothing. SIGTERM or Ctrl-C stop it
    cleanly (work in hand finishes, the rest stays pending); SIGHUP reloads the workflows
    (they also reload when their files change; an invalid set keeps the running one).

    Example: `crmflow run --log-format json --http 127.0.0.1:9464`; and
    `crmflow run --backfill` shows (and asks to confirm) what a first start would fire.
    """
    import signal
    import threading

    from crmflow.daemon.lock import single_daemon

    with _guard():
        daemon = _daemon(config_path, log_format.value, shadow=shadow)
        with single_daemon(daemon.config.state_url), _listening(daemon, http, http_token):
            if backfill:
                preview = daemon.backfill_preview()
                for workflow, count in preview.items():
                    print(f"{workflow}: would act on {count} existing record(s)")
                if not yes and not typer.confirm("Fire these workflows now?", default=False):
                    raise typer.Exit(1)
            stop, reload = threading.Event(), threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop(stop))
            signal.signal(signal.SIGINT, lambda *_: daemon.request_stop(stop))
            signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload(reload))
            daemon.run(stop, reload, backfill=backfill)


@contextmanager
def _listening(daemon: Any, address: str | None, token: str | None) -> Iterator[None]:
    """`run --http`: the listener for metrics, health and the pages, while the daemon runs."""
    if address is None:
        yield
        return
    from crmflow.commands.web import WebView, parse_address, serve

    def workflows(entity: str) -> list[str]:
        return sorted(w.id for w in daemon.rules.workflows if w.entity == entity and w.enabled)

    view = WebView(
        daemon.state,
        daemon.metrics,
        daemon.health,
        workflows,
        daemon.clock,
        token,
        entities=daemon.config.model.names,
    )
    server = serve(parse_address(address), view)
    daemon.log.note(f"serving metrics, health and pages on http://{address}")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@app.command()
def tick(
    now: Annotated[
        str | None, typer.Option("--now", help="ISO date-time to act as now.", show_default=False)
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """One poll plus everything due, then exit (for running crmflow from cron).

    Example: `* * * * * cd /etc/crmflow && crmflow tick` in a crontab.
    """
    from crmflow.daemon.lock import single_daemon

    with _guard():
        daemon = _daemon(config_path, "plain", now)
        with single_daemon(daemon.config.state_url):
            daemon.start()
            summary = daemon.tick()
            daemon.close()
        print(f"{summary.changes} change(s), {summary.actions} due action(s)")


def _state(config_path: Path | None, *, shadow: bool = False) -> Any:
    from crmflow.state.store import State

    config = _load_config(config_path, required=True)
    return State((config.shadow() if shadow else config).state_url)


@app.command()
def status(
    fmt: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text or json.")
    ] = PlanFormat.text,
    config_path: ConfigOption = None,
) -> None:
    """Last poll, lag, pending actions by status, failures of the last day.

    Example: `crmflow status --format json`
    """
    import json

    from crmflow.commands.control import status as read_status
    from crmflow.timeutil import clock_from_env, format_fixed, parse_instant

    with _guard():
        report = read_status(_state(config_path), clock_from_env()())
        if fmt == PlanFormat.json:
            print(json.dumps(report))
            return
        if not report["daemons"]:
            print("daemon:       not running (start one with `crmflow run`)")
        for daemon in report["daemons"]:
            seen = f"seen {daemon['seen_seconds_ago']}s ago"
            if daemon["state"] == "gone":  # its heartbeat timed out: killed, or cut off
                print(f"daemon:       {daemon['id']} (gone, last {seen})")
            else:
                role = "leader" if daemon["leader"] else "worker"
                print(f"daemon:       {daemon['id']} ({role}, {seen})")
        last_poll = report["last_poll"]
        print(
            f"last poll:    {format_fixed(parse_instant(last_poll)) if last_poll else 'never'}"
            + (f" ({report['lag_seconds']}s ago)" if report["lag_seconds"] is not None else "")
        )
        print(f"paused:       {'yes' if report['paused'] else 'no'}")
        for workflow, why in report["held"].items():
            print(f"held:         {workflow}: {why}")
        pending = ", ".join(f"{k} {v}" for k, v in report["pending"].items()) or "none"
        print(f"actions:      {pending}")
        print(f"next due:     {report['next_due'] or '-'}")
        print(f"failures 24h: {report['failures_24h']}")


pending_app = typer.Typer(
    help="Pending actions (delays, waits, retries, schedules): list (the default), show, "
    "cancel, retry.\n\nExamples: `crmflow pending`, `crmflow pending show 12`, "
    "`crmflow pending retry --failed`.",
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(pending_app, name="pending")
StatusFilter = Annotated[
    str | None,
    typer.Option(
        "--status", help="Only this status (pending, waiting, failed, ...).", show_default=False
    ),
]
FormatOption = Annotated[PlanFormat, typer.Option("--format", "-f", help="text or json.")]
ActionId = Annotated[int, typer.Argument(help="The action's id (first column of the list).")]


def _pending_list(status_filter: str | None, fmt: PlanFormat, config_path: Path | None) -> None:
    import json

    from crmflow.commands import control

    with _guard():
        rows = control.pending_rows(_state(config_path), status_filter)
        if fmt == PlanFormat.json:
            print(json.dumps(rows))
            return
        for r in rows:
            error = f"  ({r['last_error']})" if r["last_error"] else ""
            print(
                f"{r['id']:>6} {r['status']:9} {r['due'] or '-':24} {r['workflow']}: "
                f"{r['action']} {r['entity']} {r['record_id'] or ''}{error}"
            )
        if not rows:
            print("no pending actions")


@pending_app.callback()
def pending(
    ctx: typer.Context,
    status_filter: StatusFilter = None,
    fmt: FormatOption = PlanFormat.text,
    config_path: ConfigOption = None,
) -> None:
    """List pending actions when no subcommand is given."""
    if ctx.invoked_subcommand is None:
        _pending_list(status_filter, fmt, config_path)


@pending_app.command("list")
def pending_list(
    status_filter: StatusFilter = None,
    fmt: FormatOption = PlanFormat.text,
    config_path: ConfigOption = None,
) -> None:
    """Pending, waiting, running and failed actions, soonest first (`--status` for others).

    Example: `crmflow pending list --status cancelled`.
    """
    _pending_list(status_filter, fmt, config_path)


@pending_app.command("show")
def pending_show(
    action_id: ActionId, fmt: FormatOption = PlanFormat.text, config_path: ConfigOption = None
) -> None:
    """One pending action whole: status, due time, attempts, key, the event it keeps.

    Example: `crmflow pending show 12`.
    """
    import json

    from crmflow.commands import control

    with _guard():
        detail = control.pending_detail(_state(config_path), action_id)
        if fmt == PlanFormat.json:
            print(json.dumps(detail, default=str))
            return
        for key, value in detail.items():
            shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
            print(f"{key:11} {shown if shown is not None else '-'}")


@pending_app.command("cancel")
def pending_cancel(action_id: ActionId, config_path: ConfigOption = None) -> None:
    """Cancel a pending, waiting or failed action. Example: `crmflow pending cancel 12`."""
    from crmflow.commands import control

    with _guard():
        print(control.cancel(_state(config_path), action_id))


@pending_app.command("retry")
def pending_retry(
    action_id: Annotated[
        int | None, typer.Argument(help="The action's id.", show_default=False)
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed action.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Make a failed or cancelled action due again now.

    Examples: `crmflow pending retry 12`, `crmflow pending retry --failed`.
    """
    from crmflow.commands import control
    from crmflow.errors import ConfigError
    from crmflow.timeutil import clock_from_env

    with _guard():
        state = _state(config_path)
        now = clock_from_env()()
        if failed == (action_id is not None):
            raise ConfigError("give an action's id or --failed (not both)")
        if failed:
            done = control.retry_failed(state, now)
            print("\n".join(done) if done else "no failed actions")
            return
        assert action_id is not None
        print(control.retry(state, action_id, now))


@app.command()
def history(
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only this workflow's rows.", show_default=False),
    ] = None,
    record: Annotated[
        str | None, typer.Option("--record", help="entity:id, e.g. deal:42", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="A duration back from now, e.g. 2h or 7d.", show_default=False
        ),
    ] = None,
    outcome: Annotated[
        list[Outcome] | None,
        typer.Option(
            "--outcome", "-o", help="Only these outcomes (repeat the option).", show_default=False
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Include the not_fired decisions of every change.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows.")] = 200,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="The history of the shadow run (run --shadow).")
    ] = False,
    fmt: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text or json.")
    ] = PlanFormat.text,
    config_path: ConfigOption = None,
) -> None:
    """Every decision: fired, not fired and why, scheduled, cancelled, done, failed, retried.

    `not_fired` rows (one per workflow and change) show with --record, --outcome or --all.
    Example: `crmflow history --record deal:42` tells why each workflow did or did not fire.
    """
    import json

    from crmflow.commands import control
    from crmflow.timeutil import clock_from_env, format_fixed, parse_instant

    with _guard():
        rows = control.history_rows(
            _state(config_path, shadow=shadow),
            workflow=workflow,
            record=record,
            since=since,
            now=clock_from_env()(),
            limit=limit,
            outcomes=[o.value for o in outcome] if outcome else None,
            everything=everything,
        )
        if fmt == PlanFormat.json:
            print(json.dumps(rows))
            return
        for r in rows:
            what = f"{r['action_type']}" if r["action_type"] else ""
            target = f"{r['entity']}:{r['record_id']}" if r["entity"] else ""
            at = format_fixed(parse_instant(r["at"]))
            print(
                f"{at} {r['outcome']:11} {r['workflow'] or '-'} {what} {target} "
                f"{r['detail'] or ''}".rstrip()
            )


@app.command()
def schedule(
    next_count: Annotated[int, typer.Option("--next", help="How many run times to show.")] = 5,
    config_path: ConfigOption = None,
) -> None:
    """The next run times of timed (schedule) workflows, in the configured time zone.

    Example: `crmflow schedule --next 10`
    """
    from crmflow.daemon.schedules import next_runs
    from crmflow.rules.ruleset import load_ruleset
    from crmflow.timeutil import clock_from_env

    with _guard():
        config = _load_config(config_path)
        rules = load_ruleset(config.rules, config)
        runs = next_runs(rules, clock_from_env()(), config.timezone, next_count)
        for moment, workflow_id in runs:
            local = moment.astimezone(config.timezone)
            print(f"{local:%Y-%m-%d %H:%M %Z}  {workflow_id}")
        if not runs:
            print("no schedule workflows")


@app.command()
def pause(
    workflow: Annotated[
        str | None,
        typer.Argument(help="Hold this workflow's actions only.", show_default=False),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Hold all actions, or one workflow's (changes are still recorded; due actions
    wait) until resume.

    Example: `crmflow pause` before a bulk import, `crmflow resume` after it.
    """
    from crmflow.engine.caps import held_flag
    from crmflow.state.store import PAUSED

    with _guard():
        if workflow is None:
            _state(config_path).set_flag(PAUSED, "1")
            print("paused: changes are recorded, actions wait for `crmflow resume`")
            return
        _state(config_path).set_flag(held_flag(workflow), "paused by hand")
        print(f"paused {workflow}: its actions wait for `crmflow resume {workflow}`")


@app.command()
def resume(
    workflow: Annotated[
        str | None,
        typer.Argument(
            help="Release this workflow (paused by hand or by its limit:).", show_default=False
        ),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Release the actions held by pause, or one workflow's (held by pause WORKFLOW or by
    its limit: cap); its held actions then run.

    Example: `crmflow resume`, or `crmflow resume big-deal-alert`
    """
    from crmflow.engine.caps import held_flag
    from crmflow.state.store import PAUSED

    with _guard():
        state = _state(config_path)
        if workflow is None:
            state.set_flag(PAUSED, None)
            print("resumed")
            return
        if state.flag(held_flag(workflow)) is None:
            raise _fail(f"{workflow} is not held (crmflow status lists what is)", 2)
        state.set_flag(held_flag(workflow), None)
        print(f"resumed {workflow}")


@app.command()
def version() -> None:
    """Print crmflow's version.

    Example: `crmflow version` (or `crmflow --version`)
    """
    print(f"crmflow {__version__}")


def main() -> None:
    app()
