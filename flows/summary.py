"""The end-of-run summary: a rich table for the CLI (artifacts reuse the same rows)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

SUMMARY_COLUMNS = ("stage", "items", "reused", "recomputed", "requests", "retries", "cache hits", "failures", "seconds")


def render_summary(summary: dict, console: Console) -> None:
    table = Table(title="graphrag-flow index")
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in summary.get("stages", []):
        table.add_row(*(str(row.get(c.replace(" ", "_"), "")) for c in SUMMARY_COLUMNS))
    console.print(table)
    sizes = Table(title="outputs")
    sizes.add_column("table")
    sizes.add_column("rows", justify="right")
    for name, rows in summary["tables"].items():
        sizes.add_row(name, str(rows))
    for name, info in summary["vector_tables"].items():
        sizes.add_row(f"lancedb/{name}", f"{info['rows']} × {info['dimension']}-d")
    console.print(sizes)
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"outputs: {summary['output']} (verified)")
