"""The end-of-run summary as the CLI prints it: rich tables and notes (graphrag_flow/summary.py
makes the rows)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graphrag_flow.summary import NEO4J_COLUMNS, SUMMARY_COLUMNS, changes_lines, neo4j_cells, rate_budget_line


def render_neo4j(result: dict | None, console: Console) -> None:
    if not result or "error" in result:
        return
    table = Table(title=f"neo4j: {result['uri']}")
    for col in NEO4J_COLUMNS:
        table.add_column(col, justify="left" if col in ("label/type", "parquet") else "right")
    for row in result["rows"]:
        table.add_row(*neo4j_cells(row))
    console.print(table)
    console.print(
        f"neo4j: {result['batches']} batch(es) written, {result['resumed_batches']} resumed; "
        f"graph {'verified' if result['verified'] else 'NOT verified'} against the parquet tables",
        highlight=False,
    )


#: Counters left out of the stage table on a narrow terminal when they are 0 (or, for the cost,
#: unknown) for every stage.
OPTIONAL_COLUMNS = ("requests", "retries", "cache hits", "failures", "tokens", "cost")
#: What a cell holds when it says nothing: 0, empty, or a cost without prices (`-`).
_NOTHING = ("0", "", "-", "$0.0000")
#: Below this width the whole stage table does not fit (the stage names alone take 28 columns).
WIDE_TABLE = 120
#: Columns a narrow stage table keeps at most, so a stage name keeps ~17 characters at 80 columns.
NARROW_COLUMNS = 7


def stage_table(stages: list[dict], width: int) -> tuple[Table, list[str]]:
    """The stage table, and the columns left out: on a terminal narrower than `WIDE_TABLE`, the
    counters that are 0 for every stage (offline: all of them), and `recomputed` (items - reused)
    when the rest would still squeeze the stage names. Numbers are never cut; a stage name that
    does not fit wraps."""
    def cell(row: dict, col: str) -> str:
        return str(row.get(col.replace(" ", "_"), ""))

    dropped = [] if width >= WIDE_TABLE else [
        col for col in OPTIONAL_COLUMNS if all(cell(row, col) in _NOTHING for row in stages)
    ]
    if width < WIDE_TABLE and len(SUMMARY_COLUMNS) - len(dropped) > NARROW_COLUMNS:
        dropped.append("recomputed")
    columns = [col for col in SUMMARY_COLUMNS if col not in dropped]
    table = Table(title="graphrag-flow index")
    for col in columns:
        if col == "stage":
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for row in stages:
        table.add_row(*(cell(row, col) for col in columns))
    return table, dropped


def dropped_note(dropped: list[str]) -> str | None:
    """The line under a narrow stage table naming what it leaves out, and why."""
    parts = []
    zeros = [col for col in dropped if col not in ("cost", "recomputed")]
    if zeros:
        parts.append(f"0 for every stage: {', '.join(zeros)}")
    if "cost" in dropped:
        parts.append("cost: none known (llm.price_per_million_tokens not set, or nothing sent)")
    if "recomputed" in dropped:
        parts.append("recomputed = items - reused")
    return f"({'; '.join(parts)})" if parts else None


def render_summary(summary: dict, console: Console) -> None:
    table, dropped = stage_table(summary.get("stages", []), console.width)
    console.print(table)
    note = dropped_note(dropped)
    if note:
        console.print(note, highlight=False)
    budget = rate_budget_line(summary.get("rate_budget"))
    if budget:
        console.print(budget, highlight=False)
    sizes = Table(title="outputs")
    sizes.add_column("table")
    sizes.add_column("rows", justify="right")
    for name, rows in summary["tables"].items():
        sizes.add_row(name, str(rows))
    for name, info in summary["vector_tables"].items():
        sizes.add_row(f"lancedb/{name}", f"{info['rows']} × {info['dimension']}-d")
    console.print(sizes)
    render_neo4j(summary.get("neo4j"), console)
    for note in summary.get("graph_notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    for line in summary.get("not_matched", []):  # file names are shown as they are, never as markup
        console.print(f"[yellow]input:[/] {escape(line)}", highlight=False)
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for line in changes_lines(summary.get("changes")):
        console.print(line, highlight=False)
    console.print(f"outputs: {summary['output']} (verified)")


def _range(span: dict | None, money: bool = False) -> str:
    if span is None:
        return "-"
    fmt = (lambda v: f"${v:.4f}") if money else (lambda v: f"{v:,}")
    return fmt(span["low"]) if span["low"] == span["high"] else f"{fmt(span['low'])} - {fmt(span['high'])}"


def render_estimate(estimate: dict, console: Console) -> None:
    """The estimate per stage and in total; exact figures show one number, the rest a range."""
    table = Table(title="graphrag-flow estimate of the next index (no request sent)")
    for col in ("stage", "requests", "prompt tokens", "completion tokens", "embedding tokens", "cost"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, s in estimate["stages"].items():
        table.add_row(name, _range(s["requests"]), _range(s.get("prompt_tokens")), _range(s.get("completion_tokens")),
                      _range(s.get("embedding_tokens")), _range(s["cost_usd"], money=True))
    total = estimate["total"]
    table.add_row("total", _range(total["requests"]), "", "", f"{_range(total['tokens'])} in all",
                  _range(total["cost_usd"], money=True))
    console.print(table)
    console.print(f"ranges from {estimate['basis']}; extraction's prompt side and text-unit embeddings are exact",
                  highlight=False)
    if total["cost_usd"] is None:
        console.print("cost: set llm.price_per_million_tokens to see it", highlight=False)
