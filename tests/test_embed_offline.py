"""The offline transformer model (`embed.offline_model: minilm`): vectors' shape and norm, determinism, independence from batch
composition (the flow resumes partway and must reproduce an uninterrupted run), semantics,
long-text handling and token counting. Runs the real model (~1 s to load, ~3 s in all)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphrag_flow.stages.embed.offline_model as embed_offline
from graphrag_flow.stages.embed.offline_model import OfflineEmbedder, get_offline_embedder

SENTENCES = [
    "The cat sat on the mat.",
    "PEP 484 introduces a standard syntax for type hints in Python function signatures.",
    "ok",
    "",
    "Asynchronous generators let a coroutine yield values while awaiting I/O, which the event "
    "loop schedules cooperatively; this text is a little longer than the others on purpose.",
]


@pytest.fixture(scope="module")
def embedder() -> OfflineEmbedder:
    return get_offline_embedder("truncate")


@pytest.fixture(scope="module")
def windows() -> OfflineEmbedder:
    return get_offline_embedder("mean_windows")


def words(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    vocab = "python module import class function value error type list dict string async await loop".split()
    return " ".join(rng.choice(vocab, size=n))


def test_shape_dtype_and_unit_length(embedder):
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) == (len(SENTENCES), embedder.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.model_name == "all-MiniLM-L6-v2-onnx-int8" and embedder.max_tokens == 256


def test_empty_text_is_a_fixed_unit_vector(embedder):
    empty, blank = embedder.embed(["", "   \n"])
    np.testing.assert_array_equal(empty, blank)  # both are "[CLS] [SEP]"
    assert abs(float(np.linalg.norm(empty)) - 1.0) < 1e-5


def test_deterministic_across_calls_and_processes(embedder):
    first = embedder.embed(SENTENCES)
    np.testing.assert_array_equal(first, embedder.embed(SENTENCES))
    code = (
        "import sys, numpy as np\n"
        "from graphrag_flow.stages.embed.offline_model import OfflineEmbedder\n"
        f"sys.stdout.write(OfflineEmbedder(threads=1).embed({SENTENCES!r}).tobytes().hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    other = np.frombuffer(bytes.fromhex(out), dtype=np.float32).reshape(first.shape)
    np.testing.assert_array_equal(first, other)  # another process, another thread count


def test_batch_composition_does_not_change_vectors(embedder, monkeypatch):
    # Lengths from 3 to 256 word pieces, so short texts get padded next to long ones, in
    # sub-batches (of 4 here, to keep the test fast) that differ between the calls below.
    monkeypatch.setattr(embed_offline, "SUB_BATCH", 4)
    texts = SENTENCES + [words(n, seed=n) for n in (5, 40, 120, 250, 400)] + [words(n, seed=n + 1) for n in (9, 70, 200)]
    alone = np.stack([embedder.embed([t])[0] for t in texts[:10]])
    together = embedder.embed(texts)
    shuffled_order = np.random.default_rng(0).permutation(len(texts))
    shuffled = embedder.embed([texts[i] for i in shuffled_order])
    np.testing.assert_allclose(together[:10], alone, atol=1e-6, rtol=0)
    np.testing.assert_allclose(shuffled[np.argsort(shuffled_order)], together, atol=1e-6, rtol=0)
    # In fact bit-identical on onnxruntime's CPU provider: padding does not touch a row's result.
    np.testing.assert_array_equal(together[:10], alone)


def test_paraphrases_are_closer_than_an_unrelated_sentence(embedder):
    a, b, unrelated = embedder.embed(
        [
            "Python functions can declare the types of their arguments with annotations.",
            "Type hints let you annotate the parameters of a Python function.",
            "The recipe needs two eggs, flour and a cup of milk.",
        ]
    )
    assert float(a @ b) > float(a @ unrelated) + 0.2
    assert float(a @ b) > float(b @ unrelated) + 0.2


def test_truncate_ignores_text_past_max_tokens_and_mean_windows_does_not(embedder, windows):
    head = words(300, seed=1)  # well over 254 word pieces
    assert embedder.count_tokens(head) > embedder.max_tokens
    tail_a = head + " " + "the recipe needs eggs flour and milk " * 20
    tail_b = head + " " + "the rocket reached orbit after launch " * 20
    np.testing.assert_array_equal(embedder.embed([tail_a]), embedder.embed([tail_b]))
    va, vb = windows.embed([tail_a, tail_b])
    assert float(va @ vb) < 0.999
    # A text that fits in one window gets the same vector from both modes.
    np.testing.assert_array_equal(embedder.embed(SENTENCES), windows.embed(SENTENCES))
    np.testing.assert_allclose(np.linalg.norm(windows.embed([tail_a]), axis=1), 1.0, atol=1e-5)


def test_mean_windows_caps_the_number_of_windows(windows, monkeypatch):
    assert embed_offline.MAX_WINDOWS == 16
    monkeypatch.setattr(embed_offline, "MAX_WINDOWS", 2)  # the same code path, 8x cheaper
    width = windows.max_tokens - 2
    capped = words(width * 2, seed=2)
    assert windows.count_tokens(capped) - 2 >= width * 2  # each word is >= 1 piece
    longer = capped + " " + "unrelated trailing content about rockets " * 50
    np.testing.assert_array_equal(windows.embed([capped]), windows.embed([longer]))


def test_count_tokens(embedder):
    assert embedder.count_tokens("") == 2  # [CLS] [SEP]
    assert embedder.count_tokens("hello world") == 4
    assert embedder.count_tokens("Hello, World!") == 6  # lower-cased; punctuation is its own piece
    long_text = words(1000, seed=3)
    assert embedder.count_tokens(long_text) > 1000  # not truncated


def test_get_offline_embedder_is_cached_and_validates():
    assert get_offline_embedder("truncate") is get_offline_embedder("truncate")
    assert get_offline_embedder("mean_windows").long_text == "mean_windows"
    with pytest.raises(ValueError):
        OfflineEmbedder("chunks")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        get_offline_embedder().embed("one string, not a list")


def test_the_long_text_mode_is_part_of_the_recorded_model(tmp_path):
    """Vectors record the model and mode, so switching embed.offline_model or embed.long_text
    re-embeds them (rows whose model differs are stale)."""
    from graphrag_flow.config import load_settings
    from graphrag_flow.stages.embed.backends import OfflineBackend

    default = OfflineBackend(load_settings(tmp_path)).model
    (tmp_path / "settings.yaml").write_text("embed: {offline_model: minilm}\n")
    truncate = OfflineBackend(load_settings(tmp_path)).model
    (tmp_path / "settings.yaml").write_text("embed: {offline_model: minilm, long_text: mean_windows}\n")
    windows = OfflineBackend(load_settings(tmp_path)).model
    assert default == "offline/all-MiniLM-L6-v2-static-v1"
    assert truncate == "offline/all-MiniLM-L6-v2-onnx-int8"
    assert windows != truncate and windows.startswith(truncate)
