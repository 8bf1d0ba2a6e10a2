"""The `graphrag-flow` command line: init, index, status, check.

`index` runs the Prefect flow in this process (Prefect starts a temporary server when no
PREFECT_API_URL is set) and shows a progress bar per stage; exit code 0 only when every
stage finished and the outputs verified.
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
from graphrag_flow.cli.console import RichProgress, console_without_known_tracebacks
from graphrag_flow.config import Settings, load_settings
from graphrag_flow.errors import GraphragFlowError
from graphrag_flow.init_project import init_project

# No local variables in tracebacks: one may hold a key or a password.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Resumable GraphRAG indexing as a Prefect flow.")
console = Console(stderr=True)
out = Console(width=max(Console().width, 150))

RootOption = Annotated[Path, typer.Option("--root", help="The project folder (settings.yaml, input/, output/)")]


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings(root: Path) -> Settings:
    try:
        return load_settings(root)
    except GraphragFlowError as exc:
        _fail(str(exc), 2)
        raise  # unreachable


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
    # Prefect's temporary server gives up after 20 s; on a busy machine it takes longer to start
    # (docs/stack-notes.md), which would fail a run that did no work yet.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.index import index as index_flow
    from graphrag_flow.cli.render import render_summary

    console_without_known_tracebacks()

    bars = Progress(
        TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    listener = RichProgress(bars)
    progress_events.add_listener(listener)
    try:
        with bars:
            summary = asyncio.run(index_flow(root=str(root.resolve()), full=full, max_cost_usd=max_cost))
    except GraphragFlowError as exc:
        _fail(str(exc))
    finally:
        progress_events.remove_listener(listener)
    render_summary(summary, out)


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
            from flows.secrets import resolve_secrets

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
