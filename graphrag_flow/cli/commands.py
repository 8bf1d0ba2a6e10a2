"""The `graphrag-flow` command line: init, index, status, check, server.

`index` runs the Prefect flow in this process, recorded on the configured Prefect API or else
on a background server it starts once and reuses (server.py), and shows a progress bar per
stage (console.py); exit code 0 only when every stage finished and the outputs verified, 130 or
143 when Ctrl-C or SIGTERM stopped it (stopping.py).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphrag_flow import progress as progress_events
from graphrag_flow.cli.console import RichProgress, route_logging
from graphrag_flow.config import SETTINGS_FILE, Settings, load_settings
from graphrag_flow.errors import GraphragFlowError
from graphrag_flow.init_project import init_project

# No local variables in tracebacks: one may hold a key or a password.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  help="Resumable GraphRAG indexing as a Prefect flow.")
console = Console(stderr=True)
# A terminal gets its own width (wider lines would wrap and garble the tables); a pipe or a file
# gets the whole table rather than rich's default 80 columns.
out = Console() if Console().is_terminal else Console(width=max(Console().width, 150))

RootOption = Annotated[Path, typer.Option("--root", help="The project folder (settings.yaml, input/, output/)")]


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings(root: Path) -> Settings:
    try:
        settings = load_settings(root)
    except GraphragFlowError as exc:
        _fail(str(exc), 2)
        raise  # unreachable
    if root.is_dir() and not (root / SETTINGS_FILE).exists():
        console.print(f"[yellow]note:[/] {root} has no {SETTINGS_FILE}: running on the defaults (provider "
                      f"{settings.llm.provider}, documents in {settings.input.dir}/) and GRAPHRAG_FLOW_* variables; "
                      f"`graphrag-flow init --root {root}` writes one with every key", highlight=False)
    return settings


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"graphrag-flow {version('graphrag-flow')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Resumable GraphRAG indexing as a Prefect flow."""


@app.command()
def init(root: RootOption) -> None:
    """Write a commented settings.yaml and an input/ folder (existing files are kept)."""
    made = init_project(root)
    for path in made:
        out.print(f"created {path}")
    if not made:
        out.print(f"{root} already has settings.yaml and input/")


@app.command()
def index(
    root: RootOption,
    full: Annotated[bool, typer.Option("--full", help="Ignore caches and checkpoints; rebuild everything")] = False,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0, help="This run's budget in US dollars (overrides llm.max_run_cost_usd)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the run's INFO log lines above the bars "
                                                                   "(the log file under cache/logs/ always has them)")] = False,
) -> None:
    """Index the project's input folder (resumes from checkpoints unless --full)."""
    if not root.is_dir():
        _fail(f"project root {root} does not exist (run `graphrag-flow init --root {root}`)", 2)
    settings = _settings(root)
    if max_cost is not None:
        settings.llm.max_run_cost_usd = max_cost
    _within_budget(root, settings)  # before the preflight: a run over budget sends no request at all
    if settings.llm.provider != "offline":
        _preflight(root, settings)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # With GRAPHRAG_FLOW_PREFECT_SERVER=temporary: Prefect's temporary server gives up after 20 s;
    # on a busy machine it takes longer to start (docs/stack-notes.md), which would fail a run
    # that did no work yet.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.index import index as index_flow
    from graphrag_flow.cli.render import render_summary

    from graphrag_flow.storage.paths import ProjectPaths

    log_file = route_logging(console, ProjectPaths(root).logs, verbose)

    bars = Progress(
        TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    listener = RichProgress(bars)
    progress_events.add_listener(listener)
    from graphrag_flow.cli.server import prefect_api
    from graphrag_flow.cli.stopping import RunStopped, exit_now, run_stoppable

    try:
        with prefect_api(console), bars:
            summary = run_stoppable(index_flow(root=str(root.resolve()), full=full, max_cost_usd=max_cost))
    except RunStopped as stopped:
        console.print(f"[yellow]stopped[/] by {stopped}: what this run finished is saved; the next "
                      f"`graphrag-flow index --root {root}` resumes from it", highlight=False)
        exit_now(128 + stopped.signum)
    except GraphragFlowError as exc:
        _fail(f"{exc}{_log_note(log_file)}")
    except Exception as exc:  # not one of ours: its traceback is in the log file and the Prefect UI
        _fail(f"{type(exc).__name__}: {exc}{_log_note(log_file)}")
    finally:
        progress_events.remove_listener(listener)
    render_summary(summary, out)
    if log_file is not None:
        out.print(f"log: {log_file}", highlight=False)


def _log_note(log_file: Path | None) -> str:
    return f"\n(the full log: {log_file})" if log_file is not None else ""


def _within_budget(root: Path, settings: Settings) -> None:
    from graphrag_flow.budget import require_estimate_within_budget

    try:
        require_estimate_within_budget(root, settings)
    except GraphragFlowError as exc:
        _fail(str(exc))


@app.command()
def estimate(
    root: RootOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON")] = False,
) -> None:
    """What the next `index` will send, per stage: requests, tokens, cost (sends no request)."""
    settings = _settings(root)
    from graphrag_flow.cli.render import render_estimate
    from graphrag_flow.estimate import estimate_project

    try:
        result = estimate_project(root, settings)
    except GraphragFlowError as exc:
        _fail(str(exc))
    if as_json:
        import json

        print(json.dumps(result, indent=2))
    else:
        render_estimate(result, out)


def _preflight(root: Path, settings: Settings) -> None:
    from graphrag_flow.cli.check import run_check

    try:
        asyncio.run(run_check(root, settings, quick=True))
    except GraphragFlowError as exc:
        _fail(str(exc))


@app.command()
def check(root: RootOption) -> None:
    """Settings valid, API reachable, key accepted, both models answer (fails in seconds)."""
    settings = _settings(root)
    from graphrag_flow.cli.check import run_check

    try:
        lines = asyncio.run(run_check(root, settings, quick=False))
    except GraphragFlowError as exc:
        _fail(str(exc))
    from graphrag_flow.budget import spending_report
    from graphrag_flow.cli.check import query_block_warnings

    spending, spending_warnings = spending_report(settings)
    for line in lines + spending:
        out.print(f"[green]ok[/] {line}", highlight=False)
    for warning in query_block_warnings(root, settings) + spending_warnings:
        out.print(f"[yellow]warning[/] {warning}", highlight=False)


@app.command()
def status(root: RootOption) -> None:
    """What each table and vector table holds, and whether the outputs verify."""
    settings = _settings(root)
    from graphrag_flow.status import project_status

    try:
        if settings.storage.aws_credentials_block:  # the outputs' store is read with the block's key
            from flows.secret_lookup import resolve_secrets

            settings = asyncio.run(resolve_secrets(settings))
        report = project_status(root, settings)
    except GraphragFlowError as exc:  # e.g. llm.prompts_dir gone since the run
        _fail(str(exc))
    table = Table(title=f"graphrag-flow status: {root}")
    for col in ("item", "done / total", "verified", "notes"):
        table.add_column(col)
    for row in report.rows:
        table.add_row(row.item, row.progress, "yes" if row.verified else "no", row.notes)
    out.print(table)
    out.print(report.headline)
    if not report.verified:
        raise typer.Exit(1)


server_app = typer.Typer(no_args_is_help=True, help="The Prefect server `index` starts in the background and reuses.")
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start the background Prefect server now (index starts it when no PREFECT_API_URL is set)."""
    from graphrag_flow.cli.server import ensure_server, prefect_home

    ensure_server(prefect_home(), out)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the background Prefect server (the next index starts it again)."""
    from graphrag_flow.cli.server import prefect_home, stop_server

    out.print(stop_server(prefect_home()), highlight=False)
