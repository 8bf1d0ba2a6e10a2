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
