"""The boundary of graphrag_flow/llm/: what it exports, and that it imports no stage, task or flow.

The package is transport only (issue #20): stages and tasks import it, never the reverse, so
a stage can move or change without touching how requests are sent. Each module is imported
in a fresh interpreter, so a module that pulls in a stage is caught even when another module
would have imported it first.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LLM = REPO / "graphrag_flow" / "llm"
#: What the transport may use from the rest of graphrag_flow: settings, errors, URL scrubbing
#: and the hash of an answer key. Anything else there is a stage's domain code.
FOUNDATION = {"graphrag_flow", "graphrag_flow.config", "graphrag_flow.errors", "graphrag_flow.urls",
              "graphrag_flow.hashing"}

IMPORT_AND_LIST = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", IMPORT_AND_LIST, module], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return set(json.loads(out))


def llm_modules() -> list[str]:
    return sorted(f"graphrag_flow.llm.{p.stem}" for p in LLM.glob("*.py")
                  if p.stem != "__init__")


@pytest.mark.parametrize("module", llm_modules())
def test_an_llm_module_imports_no_stage_task_or_flow(module):
    loaded = modules_loaded_by(module)
    ours = {m for m in loaded if m.split(".")[0] in ("graphrag_flow", "tasks", "flows")}
    outside = sorted(m for m in ours if not m.startswith("graphrag_flow.llm") and m not in FOUNDATION)
    assert outside == [], f"{module} imports {outside}: the llm package must not depend on stages, tasks or flows"


def test_the_package_exports_its_api_and_loads_only_what_a_name_needs():
    import graphrag_flow.llm as llm

    for name in llm.__all__:
        home = importlib.import_module(f"graphrag_flow.llm.{llm._API[name]}")
        assert getattr(llm, name) is getattr(home, name), name
    from graphrag_flow.llm import AnswerCache, LLMStats, OpenAICompatibleClient, plan_batches  # noqa: F401

    with pytest.raises(AttributeError, match="no attribute 'Transportt'"):
        llm.Transportt  # noqa: B018
    # The schemas alone (what the offline extractor and the reports use) bring no HTTP client.
    loaded = modules_loaded_by("graphrag_flow.llm.schemas")
    assert "aiohttp" not in loaded and "tiktoken" not in loaded
    loaded = subprocess.run([sys.executable, "-c", "import sys; from graphrag_flow.llm import GraphExtraction; "
                             "print('aiohttp' in sys.modules)"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=True).stdout
    assert loaded.strip() == "False"

