"""recall@5 of the offline embedding models on written questions; print JSON.

For each test corpus (peps-mini, the novel's chapters) the corpus is indexed once offline, then
the texts of each vector field (text units, entity descriptions `title:description`, report
`full_content`) and the questions of tests/gold/questions/<corpus>.yaml are embedded with each
model: `minilm-static` (the default), `minilm` with `truncate` and with `mean_windows`. A
question is answered at 5 when one of its 5 nearest texts holds its answer passage (whitespace
and case aside). Every question has an answer in the text units; for entities and reports only
the questions whose passage some description or report holds are asked (their count is printed).

    .venv/bin/python benchmarks/offline_retrieval.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import run_flow_subprocess  # noqa: E402

RUNNER = r"""
import asyncio, json, sys
from flows.index import index
summary = asyncio.run(index(root=sys.argv[1]))
print("SUMMARY " + json.dumps({"tables": summary["tables"]}))
"""
CORPORA = ("peps-mini", "pride-and-prejudice")


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _models() -> dict:
    from graphrag_flow.stages.embed.offline_model import get_offline_embedder
    from graphrag_flow.stages.embed.static_model import get_static_embedder

    return {"minilm-static": get_static_embedder(), "minilm truncate": get_offline_embedder("truncate"),
            "minilm mean_windows": get_offline_embedder("mean_windows")}


def _fields(output: Path) -> dict[str, list[str]]:
    entities = pd.read_parquet(output / "entities.parquet")
    return {"text units": pd.read_parquet(output / "text_units.parquet")["text"].tolist(),
            "entities": (entities["title"] + ":" + entities["description"]).tolist(),
            "reports": pd.read_parquet(output / "community_reports.parquet")["full_content"].tolist()}


def recall_at_5(embedder, texts: list[str], questions: list[dict]) -> tuple[float, int, float]:
    """(recall@5, questions asked, seconds to embed the texts)."""
    normed = [_norm(t) for t in texts]
    asked = [(q, {i for i, t in enumerate(normed) if _norm(q["answer"]) in t}) for q in questions]
    asked = [(q, relevant) for q, relevant in asked if relevant]
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    scores = embedder.embed([q["question"] for q, _ in asked]) @ vectors.T
    hits = sum(bool(relevant & set(np.argsort(-row, kind="stable")[:5].tolist())) for (_, relevant), row in zip(asked, scores))
    return hits / len(asked), len(asked), seconds


def main() -> None:
    models = _models()
    result: dict = {"k": 5, "corpora": {}}
    for corpus in CORPORA:
        root = Path(tempfile.mkdtemp(prefix=f"graphrag-flow-retrieval-{corpus}-"))
        (root / "settings.yaml").write_text(yaml.safe_dump({"input": {"dir": str(REPO / "tests" / "corpora" / corpus)}}))
        run_flow_subprocess(RUNNER, root)
        questions = yaml.safe_load((REPO / "tests" / "gold" / "questions" / f"{corpus}.yaml").read_text())["questions"]
        per_field = {}
        for field, texts in _fields(root / "output").items():
            per_field[field] = {"texts": len(texts)}
            for name, embedder in models.items():
                recall, asked, seconds = recall_at_5(embedder, texts, questions)
                per_field[field]["questions"] = asked
                per_field[field][name] = {"recall_at_5": round(recall, 3), "embed_seconds": round(seconds, 2)}
        result["corpora"][corpus] = per_field
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
