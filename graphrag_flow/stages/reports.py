"""The reports stage: one report per community, extractive offline or written by a chat model.

An offline report is made of the community's own material (its top entities and its
strongest relationships with their source sentences), so it can be checked against the
graph, and it has the same shape as an LLM's `community_report` answer. An LLM report is
written from a context of the community's entities and relationships, strongest first, trimmed
to `llm.report_max_input_tokens` (or, when its own material does not fit, from its
sub-communities' reports first, as GraphRAG does).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Iterator

import pandas as pd

from graphrag_flow.aio import gather_fatal_first
from graphrag_flow.errors import ItemFailedError
from graphrag_flow.hashing import sha256_json, sha256_parts, sha256_text
from graphrag_flow.llm import CommunityReportAnswer, Finding
from graphrag_flow.progress import StageProgress
from graphrag_flow.prompts import chat_messages
from graphrag_flow.llm import count_tokens, get_encoding
from graphrag_flow.stages.communities import community_periods
from graphrag_flow.stages.summarize import cap_text

if TYPE_CHECKING:
    from graphrag_flow.llm import OpenAICompatibleClient

MAX_FINDINGS = 5
#: A reports frame's columns, also when there is no community to report on.
REPORT_COLUMNS = ["id", "community", "level", "parent", "children", "title", "summary", "full_content", "rank",
                  "rating_explanation", "findings", "full_content_json", "period", "size", "content_sha256"]


def render_full_content(answer: CommunityReportAnswer) -> str:
    """GraphRAG's markdown: `# title`, summary, then `## finding` and its explanation."""
    parts = [f"# {answer.title}", "", answer.summary]
    for finding in answer.findings:
        parts += ["", f"## {finding.summary}", "", finding.explanation]
    return "\n".join(parts)


def answer_json(answer: CommunityReportAnswer) -> str:
    return json.dumps(answer.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)


#: One entity of a community: title, type, description, degree, frequency.
Member = dict
#: One relationship inside a community: source, target, description, weight.
Rel = dict


def _by_strength(members: list[Member]) -> list[Member]:
    return sorted(members, key=lambda m: (-m["degree"], -m["frequency"], m["title"]))


def _by_degree(members: list[Member]) -> list[Member]:
    return sorted(members, key=lambda m: (-m["degree"], m["title"]))


def _strongest(rels: list[Rel]) -> list[Rel]:
    return sorted(rels, key=lambda r: (-r["weight"], r["source"], r["target"]))


def display_name(title: str, description: str) -> str:
    """An entity's name as its text writes it: titles are upper case (GraphRAG's keys), so the
    casing is found in its description ("TypeAliasType", "GIL", "CPython"); a title the
    description does not spell keeps its upper case when short, else reads as a title."""
    if description:
        found = re.search(r"(?<![\w])" + re.escape(title) + r"(?![\w])", description, re.IGNORECASE)
        if found:
            return found.group()
    return title if len(title) <= 4 or " " not in title and not title.isalpha() else title.title()


def _names(names: list[str]) -> str:
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


def offline_report(members: list[Member], rels: list[Rel]) -> CommunityReportAnswer:
    """An extractive report from the community's entities and relationships.

    The title names its three strongest entities as their text writes them; the summary opens
    with what the community is about; findings are its strongest relationships, each sentence
    used once; the rating grows with how often the community's entities are mentioned (text
    units naming them, per entity) and, less, with its size.

    Plain records rather than DataFrames: a pandas sort and selection per community would cost
    more than the whole report (thousands of communities on a large corpus).
    """
    ordered = _by_strength(members)
    shown = {m["title"]: display_name(m["title"], m["description"]) for m in members}
    top = [shown[m["title"]] for m in ordered[:3]]
    title = _names(top)
    types = Counter(m["type"] or "UNKNOWN" for m in members)
    type_text = ", ".join(f"{n} {t.lower()}" for t, n in sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    lead = ordered[0]
    mentions = int(sum(m.get("frequency", 1) for m in members))
    summary = (
        f"This community is about {title}: {len(members)} entities ({type_text}) and {len(rels)}"
        f" relationships between them, centred on {shown[lead['title']]}. {cap_text(lead['description'], 400)}"
    ).strip()
    findings: list[Finding] = []
    used: set[str] = set()
    for r in _strongest(rels):
        explanation = cap_text(r["description"], 600) or f"{shown.get(r['source'], r['source'])} is related to {shown.get(r['target'], r['target'])}."
        summary_line = f"{shown.get(r['source'], r['source'])} and {shown.get(r['target'], r['target'])}"
        if explanation in used or summary_line in used:
            continue
        used.update((explanation, summary_line))
        findings.append(Finding(summary=summary_line, explanation=explanation))
        if len(findings) == MAX_FINDINGS:
            break
    if not findings:
        for m in _by_degree(members)[:MAX_FINDINGS]:
            explanation = cap_text(m["description"], 600) or shown[m["title"]]
            if explanation not in used:
                used.add(explanation)
                findings.append(Finding(summary=shown[m["title"]], explanation=explanation))
    # Mentions per entity, so that big communities do not all reach the top of the scale.
    rating = round(min(10.0, 1.0 + 1.5 * math.log2(1 + mentions / len(members)) + 0.5 * math.log2(1 + len(members))), 1)
    return CommunityReportAnswer(
        title=title,
        summary=summary,
        rating=rating,
        rating_explanation=(
            f"Rated {rating} from how often its entities are mentioned ({mentions} text-unit mentions,"
            f" {mentions / len(members):.1f} per entity) and its size ({len(members)} entities)."
        ),
        findings=findings,
    )


def _context_lines(members: list[Member], rels: list[Rel], sub_reports: list[str]) -> Iterator[str]:
    """The context's lines, made as they are read: a community too big for the budget has its
    first few hundred lines read of tens of thousands (the corpus's top-level community)."""
    if sub_reports:
        yield "-----Sub-community reports-----"
        yield from sub_reports
    yield "-----Entities-----"
    yield "title,type,description"
    for m in _by_degree(members):
        yield f"{m['title']},{m['type']},{m['description']}"
    yield "-----Relationships-----"
    yield "source,target,description,weight"
    for r in _strongest(rels):
        yield f"{r['source']},{r['target']},{r['description']},{r['weight']:g}"


def _trimmed(lines: Iterable[str], max_tokens: int) -> tuple[str, bool]:
    """The lines that fit in `max_tokens`, and whether all of them did.

    A token is at least one byte, so lines whose UTF-8 bytes (plus a newline each) fit the
    budget fit in tokens too and are not tokenized: most communities' own material. Counting
    every line's tokens would be a good part of the event loop's time while reports are written
    (docs/performance.md). Lines past the budget are never made.
    """
    lines = iter(lines)
    head: list[str] = []
    size = 0
    for line in lines:
        head.append(line)
        size += len(line.encode("utf-8")) + 1
        if size > max_tokens:
            break
    else:
        return "\n".join(head), True
    kept: list[str] = []
    used = 0
    for line in itertools.chain(head, lines):
        n = count_tokens(line) + 1
        if used + n > max_tokens:
            if not kept:  # one huge line: keep its head rather than nothing
                kept.append(get_encoding().decode(get_encoding().encode(line, disallowed_special=())[:max_tokens]))
            return "\n".join(kept), False
        kept.append(line)
        used += n
    return "\n".join(kept), True


def report_context(
    members: list[Member],
    rels: list[Rel],
    sub_reports: list[str],
    max_tokens: int,
) -> str:
    """The text an LLM writes a report from, trimmed to `max_tokens`: sub-community reports
    first when given, then entities and relationships, strongest first."""
    return _trimmed(_context_lines(members, rels, sub_reports), max_tokens)[0]


def local_context(members: list[Member], rels: list[Rel], max_tokens: int) -> str | None:
    """The community's own entities and relationships, if all of them fit in `max_tokens`.

    As in GraphRAG, a community whose own material fits is reported from it alone; only one
    that does not fit is reported from its sub-communities' reports (then as much of its own
    material as fits). So most reports need not wait for any other report.
    """
    text, complete = _trimmed(_context_lines(members, rels, []), max_tokens)
    return text if complete else None


#: The records of some ids, in order, once each is final (graphrag_flow/channels.py Channel.rows).
RowsById = Callable[[Iterable[str]], Awaitable[list[dict]]]
#: Waits for, and returns, the community's sub-community reports (asked only when needed).
SubReports = Callable[[], Awaitable[list[str]]]
ReportOne = Callable[[list[Member], list[Rel], SubReports], Awaitable[tuple[CommunityReportAnswer, str]]]


def offline_report_and_material(members: list[Member], rels: list[Rel]) -> tuple[CommunityReportAnswer, str]:
    """An extractive report and the sha256 of the material it was made from."""
    material = sha256_json(
        [[[m["title"], m["type"], m["description"], m["degree"], m.get("frequency")] for m in members],
         [[r["source"], r["target"], r["description"], r["weight"]] for r in rels]]
    )
    return offline_report(members, rels), material


def offline_reporter() -> ReportOne:
    """Extractive reports read only the community's own material: they never wait for others."""

    async def report_one(members: list[Member], rels: list[Rel], sub_reports: SubReports):
        return offline_report_and_material(members, rels)

    return report_one


#: Entities and relationships a community may have for its report context to be made on the
#: event loop; a bigger one is made in a worker thread.
CONTEXT_ON_LOOP_MAX_ITEMS = 300


def llm_reporter(client: "OpenAICompatibleClient", prompt: str, max_input_tokens: int) -> ReportOne:
    async def report_one(members: list[dict], rels: list[dict], sub_reports: SubReports):
        # A small community's context is made on the loop: from plain records it takes a few
        # ms, and a worker thread per report costs more than that in GIL hand-offs with the loop
        # serving the requests in flight. A big one (sorting thousands of relationships,
        # tokenizing up to the budget) would hold the loop, so it goes to a thread
        # (docs/performance.md, "The event loop"). The stage loads the tokenizer in a thread
        # before the first report.
        if len(members) + len(rels) <= CONTEXT_ON_LOOP_MAX_ITEMS:
            context = local_context(members, rels, max_input_tokens)
        else:
            context = await asyncio.to_thread(local_context, members, rels, max_input_tokens)
        if context is None:  # too big: report from the sub-communities' reports (GraphRAG's way)
            subs = await sub_reports()
            context = await asyncio.to_thread(report_context, members, rels, subs, max_input_tokens)
        item = f"community report of {', '.join(m['title'] for m in members[:3])}"
        answer: CommunityReportAnswer = await client.chat("reports", "community_report", chat_messages(prompt, context), item)
        return answer, sha256_text(context)

    return report_one


def communities_with_periods(communities: pd.DataFrame, degrees: pd.DataFrame, text_units: pd.DataFrame,
                             documents: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Communities with their period, and each entity's degree (pandas: run it in a thread)."""
    comms = communities.copy()  # the communities stage's published frame is shared with its save
    comms["period"] = community_periods(comms, text_units, documents)
    return comms, dict(zip(degrees["title"].tolist(), degrees["degree"].tolist()))


def report_id(community_id: str) -> str:
    return sha256_parts("report", community_id)


async def build_reports(
    communities: pd.DataFrame,
    degree: dict[str, int],
    entity_rows: RowsById,
    relationship_rows: RowsById,
    report_one: ReportOne,
    concurrency: int,
    progress: StageProgress,
    on_report: Callable[[dict], None] | None = None,
) -> tuple[pd.DataFrame, list[ItemFailedError]]:
    """One report per community, each started as soon as its own members are summarized.

    Members and relationships come from `entity_rows` and `relationship_rows` (the summarize
    stage's rows, posted as it goes), so reports overlap the summaries. A report that needs its sub-communities' reports (its own material does not
    fit the budget) waits for those, and only those: not for a whole level (a level barrier
    left the limit idle while one slow request finished, and every level paid that tail
    again). Waiting never holds one of the `concurrency` slots, so waiting never starves the
    work. The result is the same in any order. `report_one` returns the answer and the sha256
    of the material it was made from, which becomes the row's `content_sha256`. `on_report`
    hears of each finished row, so its embedding can start before the stage ends.
    """
    failures: list[ItemFailedError] = []
    rows: dict[int, dict] = {}
    limit = asyncio.Semaphore(max(1, concurrency))
    done = {int(c): asyncio.Event() for c in communities["community"]}

    async def one(row) -> None:
        community = int(row.community)
        children = [int(c) for c in row.children if int(c) in done]
        held = False

        async def sub_reports() -> list[str]:
            nonlocal held
            if not children:
                return []
            limit.release()
            held = False
            for child in children:
                await done[child].wait()
            await limit.acquire()
            held = True
            return [rows[c]["full_content"] for c in children if c in rows]

        try:
            members = [m | {"degree": degree.get(m["title"], 0)} for m in await entity_rows(row.entity_ids)]
            rels = await relationship_rows(row.relationship_ids)
            await limit.acquire()
            held = True
            try:
                answer, material = await report_one(members, rels, sub_reports)
            except ItemFailedError as exc:
                failures.append(exc)
            else:
                rows[community] = {
                    "id": report_id(row.id),
                    "community": community,
                    "level": int(row.level),
                    "parent": int(row.parent),
                    "children": list(row.children),
                    "title": answer.title,
                    "summary": answer.summary,
                    "full_content": render_full_content(answer),
                    "rank": float(answer.rating),
                    "rating_explanation": answer.rating_explanation,
                    "findings": [f.model_dump() for f in answer.findings],
                    "full_content_json": answer_json(answer),
                    "period": row.period,
                    "size": int(row.size),
                    "content_sha256": material,
                }
                if on_report is not None:
                    on_report(rows[community])
                progress.advance()
        finally:
            if held:
                limit.release()
            done[community].set()  # a failed child still releases its parent

    # Deepest first, so with a small limit the slots go to the work that unblocks the most.
    ordered = communities.sort_values(["level", "community"], ascending=[False, True])
    await gather_fatal_first(one(r) for r in ordered.itertuples())
    frame = pd.DataFrame([rows[k] for k in sorted(rows)], columns=REPORT_COLUMNS)
    return frame, failures
