"""GraphRAG 3.3.0's own query engine on graphrag-flow's output: `graphrag query` with no conversion.

GraphRAG is not a dependency of graphrag-flow: the test installs graphrag==3.3.0 with uv into
its own virtual environment, cached under pytest's cache folder (.pytest_cache/d/) and reused
while its marker file is there. A project made by `init_project` (GraphRAG's model blocks
included) indexes peps-mini with the openai provider against the fake server; then
`graphrag query --method global|local|drift|basic` runs on copies of it, each copy pointing at
its own fake server, so every server's prompt log holds exactly one method's requests. An
offline-provider project answers global. Exit code 0 alone proves nothing (GraphRAG prints a
canned "I am sorry..." on an empty context): each answer must come from the fake server and
the prompts GraphRAG sent must carry our rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, make_project, run_cli
from fake_openai import GRAPHRAG_ANSWER_PREFIX, FakeOpenAIServer
from graphrag_flow.config import LLMSettings, load_settings
from graphrag_flow.graphrag_query import API_KEY_REFERENCE, graphrag_blocks, query_block_warnings
from graphrag_flow.init_project import init_project
from test_graphrag_schema import schema_mismatches

GRAPHRAG = "graphrag==3.3.0"
KEY = "sk-fake-graphrag-query"
QUESTION = "What do the PEPs say about naming conventions?"
CANNED = "I am sorry but I am unable to answer this question given the provided data."
METHODS = ("global", "local", "drift", "basic")
DIMENSIONS = 48  # not the fake's default (64): proves the query embeds with the index's dimensions

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def graphrag_exe(request) -> Path:
    """`graphrag` from a cached venv (python -m uv venv + uv pip install graphrag==3.3.0)."""
    venv = Path(request.config.cache.mkdir("graphrag-3.3.0-venv"))
    marker = venv / ".graphrag-installed"
    exe = venv / "bin" / "graphrag"
    if not (marker.exists() and exe.exists()):
        shutil.rmtree(venv)
        uv = [sys.executable, "-m", "uv"]
        t0 = time.monotonic()
        for cmd in (uv + ["venv", "--quiet", "--python", sys.executable, str(venv)],
                    uv + ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), GRAPHRAG]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        marker.write_text(f"{GRAPHRAG} installed in {time.monotonic() - t0:.1f} s\n")
    print(marker.read_text().strip())
    return exe


def graphrag_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHRAG", "OPENAI", "PREFECT_"))}
    # litellm fetches a model price list from GitHub unless told to use its bundled copy.
    env.update(OPENAI_API_KEY=KEY, LITELLM_LOCAL_MODEL_COST_MAP="True", NO_COLOR="1")
    return env


def point_blocks_at(root: Path, base_url: str) -> None:
    """What the README tells a user: GraphRAG's blocks get llm.api_base too."""
    settings = yaml.safe_load((root / "settings.yaml").read_text(encoding="utf-8"))
    for section in ("completion_models", "embedding_models"):
        for block in settings[section].values():
            block["api_base"] = base_url
    (root / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")


def start_query(exe: Path, root: Path, method: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(exe), "query", "--root", str(root), "--method", method, QUESTION],
        cwd=root.parent, env=graphrag_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory, peps_mini, prefect_home, graphrag_exe):
    """Index both projects, then run the five queries at once (each on its own server)."""
    base = tmp_path_factory.mktemp("graphrag-query")
    servers = {name: FakeOpenAIServer().start() for name in ("index", *METHODS, "offline")}
    try:
        # openai project: init's settings.yaml, edited the way the README says
        openai_root = base / "peps"
        init_project(openai_root)
        settings = yaml.safe_load((openai_root / "settings.yaml").read_text(encoding="utf-8"))
        settings["input"]["dir"] = str(peps_mini)
        settings["llm"].update(provider="openai", api_base=servers["index"].base_url, max_concurrency=16,
                               embedding_dimensions=DIMENSIONS)
        settings["embedding_models"]["default_embedding_model"]["call_args"] = {"dimensions": DIMENSIONS}
        (openai_root / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        point_blocks_at(openai_root, servers["index"].base_url)
        t0 = time.monotonic()
        indexed = run_cli(["index", "--root", str(openai_root)], prefect_home, OPENAI_API_KEY=KEY)
        assert indexed.returncode == 0, indexed.stdout + indexed.stderr
        offline_root = make_project(base / "offline", input_dir=REPO / "examples" / "input")
        init_blocks = yaml.safe_load(init_project(base / "blocks")[0].read_text(encoding="utf-8"))
        with (offline_root / "settings.yaml").open("a", encoding="utf-8") as f:
            yaml.safe_dump({k: init_blocks[k] for k in ("completion_models", "embedding_models")}, f)
        point_blocks_at(offline_root, servers["offline"].base_url)
        indexed = run_cli(["index", "--root", str(offline_root)], prefect_home)
        assert indexed.returncode == 0, indexed.stdout + indexed.stderr
        t_index = time.monotonic() - t0

        roots = {}
        for method in METHODS:  # one copy per method, its blocks pointing at that method's server
            roots[method] = base / f"query-{method}"
            shutil.copytree(openai_root, roots[method], ignore=shutil.ignore_patterns("cache"))
            point_blocks_at(roots[method], servers[method].base_url)
        roots["offline"] = offline_root
        for srv in servers.values():
            srv.reset()
            srv.configure(log_prompts=True)
        t0 = time.monotonic()
        procs = {name: start_query(graphrag_exe, root, "global" if name == "offline" else name)
                 for name, root in roots.items()}
        results = {name: finish(proc) for name, proc in procs.items()}
        t_query = time.monotonic() - t0
        print(f"indexing both projects: {t_index:.1f} s; five graphrag queries in parallel: {t_query:.1f} s")
        logs = {name: servers[name].stats()["log"] for name in roots}
        yield {"openai_root": openai_root, "offline_root": offline_root, "results": results, "logs": logs}
    finally:
        for srv in servers.values():
            srv.stop()


def _table(root: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(root / "output" / f"{name}.parquet")


def _prompts(log: list[dict], *kinds: str) -> list[str]:
    return ["\n".join(m["content"] for m in e["messages"]) for e in log if e.get("kind") in kinds]


def _answered(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"graphrag query exited {code}:\n{out[-3000:]}\n{err[-3000:]}"
    assert CANNED not in out, "GraphRAG found no context in our output:\n" + err[-3000:]
    assert GRAPHRAG_ANSWER_PREFIX in out, out[-3000:]
    return out


def _assert_global(result, log, root: Path) -> None:
    out = _answered(result)
    assert "(global_reduce," in out  # the final answer is the reduce step's
    maps = _prompts(log, "global_map")
    assert maps, "no map request reached the server"
    reports = _table(root, "community_reports")
    context = "\n".join(maps)
    # GraphRAG writes the map context with DataFrame.to_csv, which doubles a field's quotes.
    carried = [s for s in reports["summary"] if s and (s in context or s.replace('"', '""') in context)]
    assert len(carried) >= min(10, len(reports)), f"{len(carried)} of {len(reports)} report summaries in the map prompts"
    assert any(t in context for t in reports["title"])


def test_both_outputs_have_graphrag_3_3_0_schema(runs):
    assert schema_mismatches(runs["openai_root"] / "output") == []
    assert schema_mismatches(runs["offline_root"] / "output") == []


def test_global_search_maps_our_community_reports(runs):
    _assert_global(runs["results"]["global"], runs["logs"]["global"], runs["openai_root"])


def test_global_search_answers_from_an_offline_provider_index(runs):
    _assert_global(runs["results"]["offline"], runs["logs"]["offline"], runs["offline_root"])


def test_local_search_context_has_our_entities_and_text_units(runs):
    out = _answered(runs["results"]["local"])
    log = runs["logs"]["local"]
    assert any(e["endpoint"] == "embeddings" for e in log), "the question was not embedded"
    prompts = _prompts(log, "search_answer")
    assert len(prompts) == 1
    prompt = prompts[0]
    entities = _table(runs["openai_root"], "entities")
    both = [t for t, d in zip(entities["title"], entities["description"]) if t in prompt and d in prompt]
    assert len(both) >= 3, "entity titles with their descriptions missing from the local context"
    units = _table(runs["openai_root"], "text_units")
    assert any(text in prompt for text in units["text"]), "no text unit text in the local context"
    assert "(search_answer," in out


def test_drift_search_primes_with_our_reports(runs):
    out = _answered(runs["results"]["drift"])
    log = runs["logs"]["drift"]
    primers = _prompts(log, "drift_primer")
    assert primers, "no DRIFT primer request"
    reports = _table(runs["openai_root"], "community_reports")
    context = "\n".join(primers)
    assert sum(c in context for c in reports["full_content"]) >= 1, "no report full_content in the primer"
    assert _prompts(log, "drift_local"), "DRIFT ran no local step"
    assert "(drift_reduce," in out


def test_basic_search_context_has_our_text_units(runs):
    out = _answered(runs["results"]["basic"])
    prompts = _prompts(runs["logs"]["basic"], "search_answer")
    assert len(prompts) == 1
    units = _table(runs["openai_root"], "text_units")
    assert sum(text in prompts[0] for text in units["text"]) >= 3, "text units missing from the basic context"
    assert "(search_answer," in out


def test_queries_stream_their_answers(runs):
    # GraphRAG asks every final answer with "stream": true; the fake answered with events.
    for name, log in runs["logs"].items():
        finals = [e for e in log if e.get("kind") in ("global_reduce", "search_answer", "drift_reduce")]
        assert finals and all(e["stream"] and e["status"] == 200 for e in finals), name


def test_init_writes_graphrag_blocks_matching_llm(tmp_path):
    (settings_path,) = [p for p in init_project(tmp_path) if p.name == "settings.yaml"]
    text = settings_path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert {k: data[k] for k in ("completion_models", "embedding_models")} == graphrag_blocks(LLMSettings())
    for section in ("completion_models", "embedding_models"):
        (block,) = data[section].values()
        assert block["api_key"] == API_KEY_REFERENCE
    assert load_settings(tmp_path).llm.provider == "offline"  # our loader accepts what init wrote
    assert query_block_warnings(tmp_path, LLMSettings(provider="openai")) == []


def test_check_warns_when_graphrag_blocks_disagree_with_llm(tmp_path, prefect_home):
    with FakeOpenAIServer(models={"gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small"}) as srv:
        init_project(tmp_path)
        settings = yaml.safe_load((tmp_path / "settings.yaml").read_text(encoding="utf-8"))
        settings["llm"].update(provider="openai", api_base=srv.base_url, chat_model="gpt-4.1",
                               embedding_dimensions=256)
        settings["embedding_models"]["default_embedding_model"]["api_key"] = "sk-literal-in-file"
        (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
        result = run_cli(["check", "--root", str(tmp_path)], prefect_home, OPENAI_API_KEY=KEY)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out
    assert "warning completion_models.default_completion_model.model is 'gpt-4.1-mini' but llm.chat_model is 'gpt-4.1'" in out
    assert "completion_models.default_completion_model.api_base is None but llm.api_base is" in out
    assert "embedding_models.default_embedding_model.call_args.dimensions is None but llm.embedding_dimensions is 256" in out
    assert "embedding_models.default_embedding_model.api_key holds a literal key" in out
    assert "sk-literal-in-file" not in out


def test_fake_server_answers_graphrag_prompt_shapes_and_keeps_its_own():
    """The shapes GraphRAG parses, streamed on request; our own schemas' rules are unchanged."""
    import json

    import openai

    with FakeOpenAIServer(log_prompts=True) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
        chat = dict(model="gpt-4.1-mini")
        stream = client.chat.completions.create(
            messages=[{"role": "system", "content": "---Data tables---\nid|text\n0|hello"},
                      {"role": "user", "content": "q?"}], stream=True, **chat)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed.startswith(GRAPHRAG_ANSWER_PREFIX) and "q?" in streamed
        points = client.chat.completions.create(
            messages=[{"role": "system", "content": 'Answer as {"points": [...]}\n---Data tables---'},
                      {"role": "user", "content": "q?"}], **chat).choices[0].message.content
        (point,) = json.loads(points)["points"]
        assert point["score"] > 0 and point["description"].startswith(GRAPHRAG_ANSWER_PREFIX)
        primer = client.chat.completions.create(
            messages=[{"role": "user", "content": "give intermediate_answer, score, follow_up_queries"}],
            response_format={"type": "json_schema", "json_schema": {"name": "PrimerResponse", "schema": {}}},
            **chat).choices[0].message.content
        assert set(json.loads(primer)) == {"intermediate_answer", "score", "follow_up_queries"}
        with pytest.raises(openai.BadRequestError):  # json_object without a known schema: still 400
            client.chat.completions.create(messages=[{"role": "user", "content": "hi"}],
                                           response_format={"type": "json_object"}, **chat)
        log = srv.stats()["log"]
    assert [e["kind"] for e in log] == ["search_answer", "global_map", "drift_primer", None]
    assert log[0]["stream"] and log[0]["messages"][1] == {"role": "user", "content": "q?"}
