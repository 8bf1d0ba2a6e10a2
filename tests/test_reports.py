"""Offline reports: made of the community's own material, in GraphRAG's report shape."""

import pandas as pd

from graphrag_flow.reports import offline_report, render_full_content, report_context


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
    assert "Pep 484" in report.title
    assert "3 entities" in report.summary
    assert 0 <= report.rating <= 10
    assert [f.explanation for f in report.findings] == [
        "PEP 484 adds the typing module.",
        "Guido van Rossum is an author of PEP 484.",
    ], "strongest relationship first, explained by its source sentence"


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
    from graphrag_flow.chunking import count_tokens

    assert count_tokens(small) <= 200 < count_tokens(full)
    assert small.startswith("-----Sub-community reports-----")


def _hierarchy():
    """Two trees: 0 <- 2 and 1 <- 3 (level 1 under level 0), one entity each."""
    entities = pd.DataFrame({
        "id": [f"e{i}" for i in range(4)], "title": [f"ENTITY {i}" for i in range(4)], "type": ["CONCEPT"] * 4,
        "description": [f"Entity {i}." for i in range(4)], "degree": [1] * 4, "frequency": [1] * 4,
    })
    relationships = pd.DataFrame({"id": ["r0"], "source": ["ENTITY 0"], "target": ["ENTITY 2"],
                                  "description": ["Entity 0 contains entity 2."], "weight": [1.0]})
    communities = pd.DataFrame({
        "id": [f"c{i}" for i in range(4)], "community": [0, 1, 2, 3], "level": [0, 0, 1, 1],
        "parent": [-1, -1, 0, 1], "children": [[2], [3], [], []],
        "entity_ids": [["e0", "e2"], ["e1", "e3"], ["e2"], ["e3"]],
        "relationship_ids": [["r0"], [], [], []], "period": ["2024-01-01"] * 4, "size": [2, 2, 1, 1],
    })
    return communities, entities, relationships


def test_a_parent_report_waits_for_its_own_children_only_and_reads_their_reports():
    import asyncio

    from graphrag_flow.progress import StageProgress
    from graphrag_flow.reports import build_reports, offline_report

    communities, entities, relationships = _hierarchy()
    parent_0_started = None
    seen_subs: dict[str, list[str]] = {}

    async def report_one(members, rels, subs):
        titles = {m["title"] for m in members}
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
        return await build_reports(communities, entities, relationships, report_one, 4, StageProgress("reports", 4))

    frame, failures = asyncio.run(main())
    assert not failures and sorted(frame["community"]) == [0, 1, 2, 3]
    by_community = dict(zip(frame["community"], frame["full_content"]))
    assert seen_subs["ENTITY 0"] == [by_community[2]], "a parent's context leads with its child's report"
    assert seen_subs["ENTITY 1"] == [by_community[3]]
    assert seen_subs["ENTITY 2"] == [] and seen_subs["ENTITY 3"] == []
