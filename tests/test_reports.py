"""Offline reports: made of the community's own material, in GraphRAG's report shape."""

import pandas as pd

from graphrag_flow.stages.reports import offline_report, render_full_content, report_context


def _community():
    members = pd.DataFrame(
        {
            "title": ["PEP 484", "GUIDO VAN ROSSUM", "TYPING"],
            "type": ["PEP", "PERSON", "MODULE"],
            "description": ["PEP 484 introduces type hints.", "Guido van Rossum co-authored PEP 484.", "The typing module."],
            "degree": [2, 1, 1],
            "frequency": [5, 2, 3],
        }
    )
    rels = pd.DataFrame(
        {
            "source": ["GUIDO VAN ROSSUM", "PEP 484"],
            "target": ["PEP 484", "TYPING"],
            "description": ["Guido van Rossum is an author of PEP 484.", "PEP 484 adds the typing module."],
            "weight": [3.0, 5.0],
        }
    )
    return members.to_dict("records"), rels.to_dict("records")


def test_offline_report_has_title_summary_rating_and_findings_from_the_graph():
    report = offline_report(*_community())
    assert report.title == "PEP 484, typing and Guido van Rossum", "each entity as its text writes it"
    assert report.summary.startswith("This community is about PEP 484, typing and Guido van Rossum")
    assert "3 entities" in report.summary
    assert 0 <= report.rating <= 10
    assert [f.explanation for f in report.findings] == [
        "PEP 484 adds the typing module.",
        "Guido van Rossum is an author of PEP 484.",
    ], "strongest relationship first, explained by its source sentence"


def test_offline_findings_never_repeat_and_rank_follows_mentions():
    members, rels = _community()
    # Two pairs explained by the same sentence (one sentence naming three entities).
    rels.append({"source": "GUIDO VAN ROSSUM", "target": "TYPING", "description": "PEP 484 adds the typing module.",
                 "weight": 4.0})
    report = offline_report(members, rels)
    explanations = [f.explanation for f in report.findings]
    assert len(explanations) == len(set(explanations)) == 2
    quiet = [{**m, "frequency": 1} for m in members]
    busy = [{**m, "frequency": 40} for m in members]
    assert offline_report(busy, rels).rating > offline_report(quiet, rels).rating, "same size, more mentions"


def test_display_name_takes_the_casing_of_the_description():
    from graphrag_flow.stages.reports import display_name

    assert display_name("TYPEALIASTYPE", "The new TypeAliasType class.") == "TypeAliasType"
    assert display_name("GIL", "the GIL is a lock") == "GIL"
    assert display_name("CPYTHON", "CPython's eval loop") == "CPython"
    assert display_name("GLOBAL INTERPRETER LOCK", "") == "Global Interpreter Lock"


def test_full_content_is_graphrag_markdown():
    report = offline_report(*_community())
    content = render_full_content(report)
    assert content.startswith(f"# {report.title}\n\n{report.summary}")
    assert content.count("\n## ") == len(report.findings)


def test_report_context_is_trimmed_to_the_token_budget():
    members, rels = _community()
    big = members * 200
    full = report_context(big, rels, ["# Sub report\nabout things"], max_tokens=100_000)
    small = report_context(big, rels, ["# Sub report\nabout things"], max_tokens=200)
    from graphrag_flow.llm import count_tokens

    assert count_tokens(small) <= 200 < count_tokens(full)
    assert small.startswith("-----Sub-community reports-----")


def _hierarchy():
    """Two trees: 0 <- 2 and 1 <- 3 (level 1 under level 0), one entity each."""
    entities = [(f"e{i}", {"title": f"ENTITY {i}", "type": "CONCEPT", "description": f"Entity {i}.", "frequency": 1})
                for i in range(4)]
    relationships = [("r0", {"source": "ENTITY 0", "target": "ENTITY 2",
                             "description": "Entity 0 contains entity 2.", "weight": 1.0})]
    communities = pd.DataFrame({
        "id": [f"c{i}" for i in range(4)], "community": [0, 1, 2, 3], "level": [0, 0, 1, 1],
        "parent": [-1, -1, 0, 1], "children": [[2], [3], [], []],
        "entity_ids": [["e0", "e2"], ["e1", "e3"], ["e2"], ["e3"]],
        "relationship_ids": [["r0"], [], [], []], "period": ["2024-01-01"] * 4, "size": [2, 2, 1, 1],
    })
    degree = {f"ENTITY {i}": 1 for i in range(4)}
    return communities, degree, entities, relationships


def _post(channels, rows):
    """Post summarized rows as the summarize stage does: entities and relationships each on its channel."""
    for item_id, record in rows:
        channels.of("summarize", "relationships" if item_id.startswith("r") else "entities").post(item_id, record)


def _build(communities, degree, channels, report_one, concurrency=4):
    from graphrag_flow.progress import StageProgress
    from graphrag_flow.stages.reports import build_reports

    return build_reports(communities, degree, channels.of("summarize", "entities").rows,
                         channels.of("summarize", "relationships").rows, report_one, concurrency,
                         StageProgress("reports", len(communities)))


def test_a_parent_that_needs_sub_reports_waits_for_its_own_children_only_and_reads_them():
    import asyncio

    from graphrag_flow.channels import Channels

    communities, degree, entities, relationships = _hierarchy()
    parent_0_started = None
    seen_subs: dict[str, list[str]] = {}

    async def report_one(members, rels, sub_reports):
        titles = {m["title"] for m in members}
        if len(titles) > 1:  # the parents: as if their own material did not fit the budget
            subs = await sub_reports()
        else:
            subs = []
        seen_subs[min(titles)] = subs
        if titles == {"ENTITY 0", "ENTITY 2"}:
            parent_0_started.set()
        if titles == {"ENTITY 3"}:
            # With a level barrier community 0 could not start before this level-1 report
            # finishes, and this would time out.
            await asyncio.wait_for(parent_0_started.wait(), timeout=5)
        return offline_report(members, rels), "sha"

    async def main():
        nonlocal parent_0_started
        parent_0_started = asyncio.Event()
        channels = Channels()
        _post(channels, entities + relationships)
        return await _build(communities, degree, channels, report_one)

    frame, failures = asyncio.run(main())
    assert not failures and sorted(frame["community"]) == [0, 1, 2, 3]
    by_community = dict(zip(frame["community"], frame["full_content"]))
    assert seen_subs["ENTITY 0"] == [by_community[2]], "a parent's context leads with its child's report"
    assert seen_subs["ENTITY 1"] == [by_community[3]]
    assert seen_subs["ENTITY 2"] == [] and seen_subs["ENTITY 3"] == []


def test_waiting_for_sub_reports_gives_up_the_slot_so_a_small_limit_cannot_deadlock():
    """One slot, and the parent gets it first (its members are summarized first): it must let
    its children use the slot while it waits for their reports."""
    import asyncio

    from graphrag_flow.channels import Channels

    communities, degree, entities, relationships = _hierarchy()
    order: list[str] = []

    async def report_one(members, rels, sub_reports):
        titles = sorted(m["title"] for m in members)
        subs = await sub_reports() if len(titles) > 1 else []
        order.append(titles[0] + (" (with sub-reports)" if subs else ""))
        return offline_report(members, rels), "sha"

    async def main():
        channels = Channels()
        first = {"e0", "e2", "r0"}  # community 0's members
        _post(channels, [r for r in entities + relationships if r[0] in first])
        run = asyncio.create_task(_build(communities, degree, channels, report_one, concurrency=1))
        await asyncio.sleep(0.05)
        _post(channels, [r for r in entities + relationships if r[0] not in first])
        return await asyncio.wait_for(run, timeout=5)

    frame, failures = asyncio.run(main())
    assert not failures and len(frame) == 4
    assert order.index("ENTITY 0 (with sub-reports)") > order.index("ENTITY 2")


def test_a_report_starts_when_its_own_members_are_summarized_not_when_all_are():
    import asyncio

    from graphrag_flow.channels import Channels

    communities, degree, entities, relationships = _hierarchy()
    started: list[str] = []

    async def report_one(members, rels, sub_reports):
        started.append(min(m["title"] for m in members))
        return offline_report(members, rels), "sha"

    async def main():
        channels = Channels()
        _post(channels, [r for r in entities if r[0] == "e3"])  # community 3's only member
        run = asyncio.create_task(_build(communities, degree, channels, report_one))
        await asyncio.sleep(0.05)
        early = list(started)
        _post(channels, [r for r in entities + relationships if r[0] != "e3"])
        frame, failures = await asyncio.wait_for(run, timeout=5)
        return early, frame, failures

    early, frame, failures = asyncio.run(main())
    assert early == ["ENTITY 3"], "only the community whose members are all in has started"
    assert not failures and len(frame) == 4
    assert dict(zip(frame["community"], frame["size"])) == {0: 2, 1: 2, 2: 1, 3: 1}


def test_the_llm_reporter_reads_sub_reports_only_when_its_own_material_does_not_fit():
    import asyncio

    from graphrag_flow.llm.schemas import CommunityReportAnswer
    from graphrag_flow.stages.reports import llm_reporter
    from graphrag_flow.stages.reports import local_context

    members, rels = _community()
    contexts: list[str] = []
    asked: list[bool] = []

    class Client:  # stands in for OpenAICompatibleClient.chat: the context is what is tested
        async def chat(self, stage, schema, messages, item):
            contexts.append(messages[-1]["content"])
            return CommunityReportAnswer(title="t", summary="s", rating=1, rating_explanation="r", findings=[])

    async def sub_reports():
        asked.append(True)
        return ["# Child report\nabout the typing module"]

    fits = local_context(members, rels, 10_000)
    assert fits is not None and local_context(members, rels, 20) is None

    asyncio.run(llm_reporter(Client(), "prompt", 10_000)(members, rels, sub_reports))
    assert contexts[-1] == fits and not asked, "own material fits: no waiting for other reports"

    asyncio.run(llm_reporter(Client(), "prompt", 60)(members, rels, sub_reports))
    assert asked and contexts[-1].startswith("-----Sub-community reports-----\n# Child report")


def test_a_trimmed_context_is_the_longest_prefix_of_whole_lines_within_the_token_budget():
    """Made lazily, a context must still be exactly what the plain definition gives: the
    request text keys the answer cache, so any change would ask for every report again."""
    import random

    from graphrag_flow.llm import count_tokens, get_encoding
    from graphrag_flow.stages.reports import _trimmed

    def reference(lines: list[str], budget: int) -> tuple[str, bool]:
        kept, used = [], 0
        for line in lines:
            n = count_tokens(line) + 1
            if used + n > budget:
                if not kept:
                    kept.append(get_encoding().decode(get_encoding().encode(line, disallowed_special=())[:budget]))
                return "\n".join(kept), False
            kept.append(line)
            used += n
        return "\n".join(kept), True

    rng = random.Random(3)
    words = ["PEP", "Guido", "asyncio", "naïve", "→", "typing", "42", "co-routine", "ünïcode", "x" * 30]
    for _ in range(300):
        lines = [" ".join(rng.choices(words, k=rng.randint(1, 40))) for _ in range(rng.randint(1, 30))]
        budget = rng.randint(1, 600)
        assert _trimmed(iter(lines), budget) == reference(lines, budget), (lines, budget)
