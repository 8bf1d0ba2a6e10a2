"""The fake OpenAI-compatible server, driven by real httpx requests."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import httpx
import pytest

try:
    from tests.fake_openai import (
        FakeConfig,
        FakeOpenAIServer,
        configure_remote,
        fake_embedding,
        fetch_stats,
        start_fake_server_process,
        stop_fake_server_process,
    )
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import (  # type: ignore[no-redef]
        FakeConfig,
        FakeOpenAIServer,
        configure_remote,
        fake_embedding,
        fetch_stats,
        start_fake_server_process,
        stop_fake_server_process,
    )

EMB = "text-embedding-3-small"
CHAT = "gpt-4.1-mini"
TEXT = "Guido van Rossum founded Python. The Python Software Foundation funds PyCon every year."


def emb_body(inputs, **extra):
    return {"model": EMB, "input": inputs, "encoding_format": "float", **extra}


def chat_body(schema="graph_extraction", text=TEXT, rf_type="json_schema", system="Extract a graph."):
    rf = {"type": "json_schema", "json_schema": {"name": schema, "strict": True, "schema": {}}}
    if rf_type == "json_object":
        rf = {"type": "json_object"}
    return {"model": CHAT, "temperature": 0, "response_format": rf,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]}


@pytest.fixture
def server():
    with FakeOpenAIServer(FakeConfig(seed=1)) as srv:
        yield srv


def test_embeddings_deterministic_unit_and_aligned(server):
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        r1 = c.post("/embeddings", json=emb_body(["alpha", "beta", "gamma"]))
        r2 = c.post("/embeddings", json=emb_body(["gamma", "alpha"], dimensions=16))
    assert r1.status_code == 200
    d = r1.json()
    assert d["object"] == "list" and d["model"] == EMB and d["usage"]["total_tokens"] > 0
    assert [x["index"] for x in d["data"]] == [0, 1, 2]
    vec = d["data"][0]["embedding"]
    assert len(vec) == 64 and math.isclose(sum(v * v for v in vec), 1.0, abs_tol=1e-5)
    assert vec == fake_embedding(EMB, "alpha")
    assert d["data"][2]["embedding"] == fake_embedding(EMB, "gamma")
    assert r2.json()["data"][1]["embedding"] == fake_embedding(EMB, "alpha", 16)
    assert fake_embedding(EMB, "alpha") != fake_embedding(EMB, "beta")


def test_chat_schemas_deterministic(server):
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        a = c.post("/chat/completions", json=chat_body())
        b = c.post("/chat/completions", json=chat_body(system="other instructions"))
        s = c.post("/chat/completions", json=chat_body("entity_summary", "  Many   words\n here "))
        rep = c.post("/chat/completions", json=chat_body("community_report"))
    assert a.status_code == 200
    ja = a.json()
    assert ja["object"] == "chat.completion" and ja["choices"][0]["finish_reason"] == "stop"
    g = json.loads(ja["choices"][0]["message"]["content"])
    assert g == json.loads(b.json()["choices"][0]["message"]["content"])  # depends on the user message only
    names = [e["name"] for e in g["entities"]]
    assert "Guido" in " ".join(names) and "Python Software Foundation" in names and len(names) <= 8
    assert all(e["type"] in {"PERSON", "ORGANIZATION", "CONCEPT", "EVENT"} for e in g["entities"])
    assert len(g["relationships"]) == len(names) - 1
    assert all(1 <= r["strength"] <= 10 for r in g["relationships"])
    assert json.loads(s.json()["choices"][0]["message"]["content"]) == {"description": "Many words here"}
    report = json.loads(rep.json()["choices"][0]["message"]["content"])
    assert set(report) == {"title", "summary", "rating", "rating_explanation", "findings"}
    assert 0 <= report["rating"] <= 10 and len(report["findings"]) == 2


def test_shuffle_keeps_indexes_and_missing_vector(server):
    server.configure(p_shuffle=1.0)
    inputs = [f"text {i}" for i in range(8)]
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        data = c.post("/embeddings", json=emb_body(inputs)).json()["data"]
        assert [x["index"] for x in data] != list(range(8))
        for x in data:
            assert x["embedding"] == fake_embedding(EMB, inputs[x["index"]])
        server.configure(p_shuffle=0.0, p_missing_vector=1.0)
        assert len(c.post("/embeddings", json=emb_body(inputs)).json()["data"]) == 7
    assert server.stats()["faults"] == {"shuffle": 1, "missing_vector": 1}


def test_auth_model_and_url_errors():
    with FakeOpenAIServer(FakeConfig(api_key="sk-good")) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            r = c.post("/embeddings", json=emb_body(["x"]), headers={"Authorization": "Bearer sk-bad"})
            assert r.status_code == 401 and "sk-bad" not in r.text and "sk-good" not in r.text
            assert c.get("/models").status_code == 401
            ok = {"Authorization": "Bearer sk-good"}
            assert c.get("/models", headers=ok).status_code == 200
            r = c.post("/embeddings", json={**emb_body(["x"]), "model": "nope"}, headers=ok)
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            assert c.post("/v2/embeddings", json=emb_body(["x"]), headers=ok).status_code == 404
        assert "sk-good" not in json.dumps(srv.stats())


def test_context_limit_400(server):
    server.configure(context_limit_tokens=10)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        long = "word" + " word" * 49
        r = c.post("/embeddings", json=emb_body(["short", long]))
        assert r.status_code == 400
        msg = r.json()["error"]["message"]
        assert msg.startswith("This model's maximum context length is 10 tokens, however you requested 50 tokens")
        assert c.post("/embeddings", json=emb_body(["short"])).status_code == 200


def test_disconnect_is_remote_protocol_error(server):
    server.configure(p_disconnect=1.0)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            c.post("/embeddings", json=emb_body(["x"]))
    st = server.stats()
    assert st["faults"] == {"disconnect": 1} and st["log"][0]["status"] == "disconnect"
    assert st["log"][0]["completed"] is False and st["in_flight"] == 0


def test_hang_is_cut_by_client_timeout_and_stop_is_clean():
    before = threading.active_count()
    srv = FakeOpenAIServer(FakeConfig(p_hang=1.0)).start()
    with httpx.Client(base_url=srv.base_url, timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.post("/embeddings", json=emb_body(["x"]))
        assert time.monotonic() - t0 < 3
    # a second hung request still open when the server stops
    c2 = httpx.Client(base_url=srv.base_url, timeout=10)
    errors = []
    th = threading.Thread(target=lambda: errors.append(_post_catch(c2)))
    th.start()
    deadline = time.monotonic() + 5
    while srv.stats()["requests"].get("embeddings", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    srv.stop()
    th.join(5)
    c2.close()
    assert time.monotonic() - t0 < 3 and errors and isinstance(errors[0], httpx.TransportError)
    st = srv.stats()
    assert st["faults"] == {"hang": 2}
    assert [e["status"] for e in st["log"]] == ["hang", "hang"] and st["in_flight"] == 0
    assert threading.active_count() == before


def _post_catch(client):
    try:
        client.post("/embeddings", json=emb_body(["y"]))
    except Exception as e:  # noqa: BLE001
        return e
    return None


def test_429_retry_after_and_500(server):
    server.configure(p_429=1.0, retry_after_s=2)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        r = c.post("/chat/completions", json=chat_body())
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        server.configure(retry_after_s=None)
        assert "retry-after" not in c.post("/chat/completions", json=chat_body()).headers
        server.configure(p_429=0.0, p_500=1.0)
        assert c.post("/chat/completions", json=chat_body()).status_code == 500
        server.configure(p_500=0.0, p_malformed=1.0)
        r = c.post("/chat/completions", json=chat_body())
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
        server.configure(p_malformed=0.0, fail_inputs=["poison"], fail_chat_substrings=["boom"])
        assert c.post("/embeddings", json=emb_body(["ok", "has poison in it"])).status_code == 500
        assert c.post("/embeddings", json=emb_body(["ok"])).status_code == 200
        assert c.post("/chat/completions", json=chat_body(text="boom here")).status_code == 500
    st = server.stats()
    assert st["faults"] == {"rate_limit": 2, "server_error": 1, "malformed": 1, "fail_input": 1, "fail_chat": 1}


def test_faults_are_seeded():
    def statuses(seed):
        with FakeOpenAIServer(FakeConfig(seed=seed, p_500=0.3, p_429=0.3)) as srv:
            with httpx.Client(base_url=srv.base_url, timeout=5) as c:
                return [c.post("/embeddings", json=emb_body(["x"])).status_code for _ in range(30)]

    a = statuses(7)
    assert a == statuses(7) and {200, 429, 500} <= set(a)


def test_capacity_limits_concurrency():
    with FakeOpenAIServer(FakeConfig(latency_s=0.25, capacity=2)) as srv:
        async def run():
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=10,
                                         limits=httpx.Limits(max_connections=10)) as c:
                t0 = time.monotonic()
                rs = await asyncio.gather(*(c.post("/embeddings", json=emb_body([f"t{i}"])) for i in range(6)))
                return time.monotonic() - t0, rs

        elapsed, rs = asyncio.run(run())
        assert all(r.status_code == 200 for r in rs)
        assert 0.7 <= elapsed < 3.0  # 3 waves of 0.25 s
        st = srv.stats()
        assert st["max_active"] == 2 and st["max_in_flight"] == 6 and st["in_flight"] == 0
        assert st["last_response_t"] - st["first_request_t"] >= 0.7


def test_json_object_fallback(server):
    server.configure(json_schema_supported=False)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        r = c.post("/chat/completions", json=chat_body("entity_summary", "Some text"))
        assert r.status_code == 400
        assert r.json() == {"error": {"message": "response_format json_schema is not supported by this model",
                                      "type": "invalid_request_error", "param": None, "code": None}}
        system = "Answer in JSON.\nJSON schema name: entity_summary\nSchema: {...}"
        r = c.post("/chat/completions", json=chat_body("x", "Some text", rf_type="json_object", system=system))
        assert r.status_code == 200
        assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"description": "Some text"}
        assert c.post("/chat/completions", json=chat_body("x", "t", rf_type="json_object")).status_code == 400


def test_stats_log_and_reset(server):
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        c.post("/embeddings", json=emb_body(["a", "b"]))
        c.post("/chat/completions", json=chat_body("community_report"))
        c.get("/models")
    st = server.stats()
    assert st["requests"] == {"embeddings": 1, "chat": 1, "models": 1}
    assert st["chat_schemas"] == {"community_report": 1} and st["embedding_inputs"] == 2
    assert st["ok"] == {"embeddings": 1, "chat": 1, "models": 1} and st["in_flight"] == 0
    e, ch, _m = st["log"]
    assert e["seq"] == 1 and e["n_inputs"] == 2 and len(e["input_sha256s"]) == 2 and e["status"] == 200
    assert e["completed"] and e["t_start"] <= e["t_end"] and e["model"] == EMB
    assert ch["schema"] == "community_report" and len(ch["body_sha256"]) == 64
    # canonical body hash: key order does not matter
    body = chat_body("community_report")
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        c.post("/chat/completions", content=json.dumps(dict(reversed(list(body.items())))),
               headers={"Content-Type": "application/json"})
    assert server.stats()["log"][-1]["body_sha256"] == ch["body_sha256"]
    server.reset()
    st = server.stats()
    assert st["log"] == [] and st["requests"] == {} and st["first_request_t"] is None
    assert fetch_stats(server.base_url)["requests"] == {}


def test_subprocess_mode():
    proc, base_url = start_fake_server_process(latency_s=0.05, models=[EMB, CHAT, "extra-model"])
    try:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with httpx.Client(base_url=base_url, timeout=5) as c:
            assert "extra-model" in [m["id"] for m in c.get("/models").json()["data"]]
            assert c.post("/embeddings", json=emb_body(["a"])).json()["data"][0]["embedding"] == fake_embedding(EMB, "a")
            cfg = configure_remote(base_url, p_disconnect=1.0)
            assert cfg["p_disconnect"] == 1.0
            with pytest.raises(httpx.RemoteProtocolError):
                c.post("/embeddings", json=emb_body(["a"]))
        st = fetch_stats(base_url)
        assert st["requests"]["embeddings"] == 2 and st["faults"] == {"disconnect": 1}
        assert st["config"]["latency_s"] == 0.05
    finally:
        stop_fake_server_process(proc)
    assert proc.returncode is not None


def test_per_item_latency_counts_inputs(server):
    server.configure(per_item_latency_s=0.02)
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        assert c.post("/embeddings", json=emb_body([f"t{i}" for i in range(10)])).status_code == 200
    e = server.stats()["log"][0]
    assert e["t_end"] - e["t_start"] >= 0.2 and e["n_inputs"] == 10


def test_openai_sdk_against_the_fake():
    """The real SDK (base64 embeddings by default, typed errors) works against the fake."""
    openai = pytest.importorskip("openai")
    with FakeOpenAIServer(FakeConfig(api_key="sk-test")) as srv:
        async def run():
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
                e = await c.embeddings.create(model=EMB, input=["a", "b"])  # encoding_format=base64
                chat = await c.chat.completions.create(**chat_body("entity_summary", "One  two"))
                srv.configure(p_disconnect=1.0)
                with pytest.raises(openai.APIConnectionError):
                    await c.embeddings.create(model=EMB, input=["a"])
                srv.configure(p_disconnect=0.0)
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-bad", max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError):
                    await bad.models.list()
            return e, chat

        e, chat = asyncio.run(run())
    assert [d.index for d in e.data] == [0, 1]
    assert all(abs(x - y) < 1e-6 for x, y in zip(e.data[1].embedding, fake_embedding(EMB, "b")))
    assert json.loads(chat.choices[0].message.content) == {"description": "One two"}


def test_cli_flags_print_one_listening_line():
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--latency", "0.2", "--capacity", "64",
         "--p-disconnect", "0.1", "--models", f"{EMB},{CHAT}", "--fail-inputs", "x1", "--fail-inputs", "x2",
         "--json-schema-supported", "false", "--retry-after", "none", "--context-limit", "100"],
        cwd=repo, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert re.fullmatch(r"LISTENING http://127\.0\.0\.1:\d+/v1\n", line)
        cfg = fetch_stats(line.split()[1], with_log=False)["config"]
        assert cfg["latency_s"] == 0.2 and cfg["capacity"] == 64 and cfg["p_disconnect"] == 0.1
        assert cfg["models"] == sorted([EMB, CHAT]) and cfg["fail_inputs"] == ["x1", "x2"]
        assert cfg["json_schema_supported"] is False and cfg["retry_after_s"] is None
        assert cfg["context_limit_tokens"] == 100
    finally:
        stop_fake_server_process(proc)
