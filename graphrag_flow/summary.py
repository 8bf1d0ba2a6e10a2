"""The end-of-run summary: per stage what it did, what changed since the last run, what the graph
holds, as rows and lines the CLI shows as tables (graphrag_flow/cli/render.py) and the flow
publishes as Prefect artifacts (flows/artifacts.py)."""

from __future__ import annotations

from graphrag_flow.incremental import communities_line
from graphrag_flow.usage import cost_text, tokens_of

SUMMARY_COLUMNS = ("stage", "items", "reused", "recomputed", "requests", "retries", "cache hits", "failures",
                   "tokens", "cost", "seconds")


def stage_rows(
    refs: dict, embeds: dict[str, dict], stats: list[dict], seconds: dict[str, float],
    carried: dict[str, int] | None = None, usage: dict | None = None,
) -> list[dict]:
    """One row per stage: items, how many were reused vs recomputed, request counters, and the
    tokens and cost of its answers received in this run (`usage`: graphrag_flow/usage.py).

    A stage served from Prefect's cache did not run: all its items count as reused. A stage
    that ran counts as reused the rows it carried over unchanged from the last completed run
    (`carried`, from graphrag_flow.incremental; documents: the unchanged ones), else its
    answer-cache hits.
    """
    counters = {row["stage"]: row for row in stats}
    rows = []
    for stage, ref in refs.items():
        items = int(ref.stats.get("items", sum(ref.rows.values())))
        ran = stage in seconds
        c = counters.get(stage, {})
        hits = int(c.get("cache_hits", 0))
        recomputed = max(0, items - hits) if ran else 0
        if ran and carried and stage in carried:
            recomputed = max(0, items - carried[stage])
        rows.append(_row(stage, items, items - recomputed, recomputed, c, seconds.get(stage, 0.0)))
    for field, result in embeds.items():
        stage = f"embed-{field}"
        rows.append(
            _row(stage, result["total"], result["reused"], result["embedded"], counters.get(stage, {}),
                 seconds.get(stage, 0.0))
        )
    usage = usage or {}
    free = None if usage.get("cost_usd") is None else 0.0  # a stage that sent nothing: 0 at known prices
    for row in rows:
        u = usage.get("stages", {}).get(row["stage"])
        row["tokens"] = tokens_of(u) if u else 0
        row["cost"] = cost_text(u["cost_usd"] if u else free)
    return rows


def graph_notes(tables: dict[str, int], offline: bool, chat_model: str) -> list[str]:
    """What an empty graph, or one without relationships, means and what to try: such a run
    is valid (its tables are written with their columns and verified), but seldom intended."""
    extractor = (
        "the offline rules find names and terms (capitalised names, CamelCase, acronyms, PEP and "
        "code references) and link those named in one sentence; plain or very short text has none: add "
        "documents, or use a chat model (llm.provider: openai)"
        if offline else
        f"the chat model ({chat_model}) found none in any text unit: check llm.chat_model and the "
        "graph_extraction prompt (llm.prompts_dir)"
    )
    units = f"{tables.get('documents', 0)} document(s), {tables.get('text_units', 0)} text unit(s) read"
    if not tables.get("entities"):
        return [f"no entities were found: the graph is empty ({units}; no relationships, communities or "
                f"reports, and only the text units have vectors); {extractor}"]
    if not tables.get("relationships"):
        return [f"no relationships were found: each of the {tables['entities']} entities is a community of "
                f"its own ({units}); {extractor}"]
    return []


def _row(stage: str, items: int, reused: int, recomputed: int, c: dict, seconds: float) -> dict:
    return {
        "stage": stage, "items": items, "reused": reused, "recomputed": recomputed,
        "requests": int(c.get("requests", 0)), "retries": int(c.get("retries", 0)),
        "cache_hits": int(c.get("cache_hits", 0)), "failures": int(c.get("failures", 0)),
        "seconds": round(seconds, 2),
    }


def rate_budget_line(budget: dict | None) -> str | None:
    """How long the run waited on each rate budget (graphrag_flow/llm/pacing.py), when one was set."""
    if not budget:
        return None
    limits = ", ".join(f"{budget[k]} {k.replace('_', ' ')}" for k in ("tokens_per_minute", "requests_per_minute")
                       if budget.get(k) is not None)
    waits = budget["waited_s"]
    return (f"rate budget ({limits}): {budget['attempts']} request(s) paced; waited "
            f"{waits['tokens_per_minute']:g} s on tokens per minute, {waits['requests_per_minute']:g} s on requests "
            f"per minute, {waits['retry_after']:g} s on the server's Retry-After")


def summary_markdown(summary: dict) -> str:
    lines = [f"# graphrag-flow index of `{summary['root']}`", "", f"Outputs: `{summary['output']}` (verified)", ""]
    lines += usage_lines(summary.get("usage"))
    lines += ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    for r in summary["stages"]:
        lines.append("| " + " | ".join(str(r.get(c.replace(" ", "_"), "")) for c in SUMMARY_COLUMNS) + " |")
    budget = rate_budget_line(summary.get("rate_budget"))
    if budget:
        lines += ["", budget]
    lines += changes_markdown(summary.get("changes"))
    lines += ["", "| table | rows |", "|---|---|"]
    lines += [f"| {n} | {rows} |" for n, rows in summary["tables"].items()]
    lines += [f"| lancedb/{n} | {v['rows']} × {v['dimension']}-d |" for n, v in summary["vector_tables"].items()]
    if summary.get("graph_notes"):
        lines += ["", "## The graph", ""] + [f"- {n}" for n in summary["graph_notes"]]
    if summary.get("not_matched"):
        lines += ["", "## Input files no pattern matches", ""] + [f"- {n}" for n in summary["not_matched"]]
    if summary.get("warnings"):
        lines += ["", "## Skipped or altered input files", ""] + [f"- {w}" for w in summary["warnings"]]
    lines += neo4j_markdown(summary.get("neo4j"))
    return "\n".join(lines) + "\n"


NEO4J_COLUMNS = ("label/type", "parquet", "parquet rows", "written", "created", "deleted", "in neo4j", "match")


def neo4j_cells(row: dict) -> tuple[str, ...]:
    """One label/type of the sink summary as display cells (columns NEO4J_COLUMNS)."""
    match = {True: "yes", False: "NO", None: "-"}[row["match"]]
    in_neo4j = "-" if row["in_neo4j"] is None else str(row["in_neo4j"])
    parquet_rows = str(row["parquet_rows"]) + (f" ({row['skipped']} skipped)" if row["skipped"] else "")
    return (row["name"], row["parquet"], parquet_rows, str(row["written"]), str(row["created"]),
            str(row["deleted"]), in_neo4j, match)


def neo4j_markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    if "error" in result:
        return ["", "## Neo4j", "", f"Failed: {result['error']}"]
    lines = ["", f"## Neo4j ({result['uri']})", "", "| " + " | ".join(NEO4J_COLUMNS) + " |",
             "|" + "---|" * len(NEO4J_COLUMNS)]
    lines += ["| " + " | ".join(neo4j_cells(r)) + " |" for r in result["rows"]]
    lines += ["", f"{result['batches']} batch(es) written, {result['resumed_batches']} resumed from a checkpoint"]
    return lines


def changes_lines(changes: dict | None) -> list[str]:
    """What changed since the last completed run: documents, then communities and reports."""
    if not changes:
        return []
    lines = [changes["headline"]]
    for kind in ("added", "changed", "removed"):
        titles = changes["titles"][kind]
        count = changes["documents"][kind]
        if titles and not changes["first_run"]:
            more = f" (+{count - len(titles)} more)" if count > len(titles) else ""
            lines.append(f"  {kind}: " + ", ".join(titles) + more)
    lines.append(communities_line(changes["communities"]))
    return lines


def changes_markdown(changes: dict | None) -> list[str]:
    if not changes:
        return []
    d = changes["documents"]
    lines = ["", "## Changes since the last completed run", "", changes_lines(changes)[0], "",
             "| documents added | changed | removed | unchanged |", "|---|---|---|---|",
             f"| {d['added']} | {d['changed']} | {d['removed']} | {d['unchanged']} |", ""]
    lines += [f"- {line.strip()}" for line in changes_lines(changes)[1:]]
    return lines


def usage_lines(usage: dict | None) -> list[str]:
    """The run's total cost, first thing on its summary (the artifact's history shows it per night)."""
    if not usage:
        return []
    cost = ("cost unknown: llm.price_per_million_tokens is not set" if usage["cost_usd"] is None
            else f"cost **${usage['cost_usd']:.4f}**")
    counted = (f" ({usage['counted_requests']} answer(s) without `usage`: counted with our tokenizer)"
               if usage.get("counted_requests") else "")
    return [f"This run: {usage['requests']} answer(s) received, {tokens_of(usage):,} tokens "
            f"({usage['prompt_tokens']:,} prompt, {usage['completion_tokens']:,} completion, "
            f"{usage['embedding_tokens']:,} embedding), {cost}{counted}.", ""]
