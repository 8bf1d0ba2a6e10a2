"""Chunking: windows overlap by the setting, ids are content-derived and stable."""

from graphrag_flow.llm import count_tokens, get_encoding
from graphrag_flow.stages.chunk import chunk_document, token_windows
from graphrag_flow.config import ChunkSettings

TEXT = " ".join(f"word{i}" for i in range(1000))


def test_windows_cover_the_text_with_the_configured_overlap():
    windows = token_windows(1000, 300, 50)
    assert windows[0] == (0, 300)
    assert all(b[0] == a[1] - 50 for a, b in zip(windows, windows[1:]))
    assert windows[-1][1] == 1000


def test_chunks_overlap_by_tokens_and_rejoin_to_the_document():
    settings = ChunkSettings(size=120, overlap=20)
    rows = chunk_document("doc", TEXT, settings)
    enc = get_encoding()
    tokens = [enc.encode(r["text"]) for r in rows]
    assert all(r["n_tokens"] <= 120 for r in rows)
    for a, b in zip(tokens, tokens[1:]):
        assert a[-20:] == b[:20]
    rebuilt = tokens[0] + [t for toks in tokens[1:] for t in toks[20:]]
    assert enc.decode(rebuilt) == TEXT


def test_text_unit_ids_are_stable_and_depend_on_document_index_and_text():
    settings = ChunkSettings(size=120, overlap=20)
    first = [r["id"] for r in chunk_document("doc", TEXT, settings)]
    again = [r["id"] for r in chunk_document("doc", TEXT, settings)]
    other_doc = [r["id"] for r in chunk_document("doc2", TEXT, settings)]
    assert first == again
    assert len(set(first)) == len(first)
    assert not set(first) & set(other_doc)
    assert all(len(i) == 64 and "'" not in i for i in first)


def test_tokenizer_is_cl100k_and_ships_in_a_wheel():
    # 'hello world' is two cl100k tokens; the offline encoding needs no download.
    assert count_tokens("hello world") == 2
