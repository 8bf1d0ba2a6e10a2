"""Where vectors come from: a local model (offline) or an OpenAI-compatible API."""

from __future__ import annotations

import asyncio

import numpy as np

from graphrag_flow.config import Settings

#: Texts per offline batch: big enough to keep the model busy, small enough that a kill
#: loses seconds of work (each batch is merged into LanceDB before the next is taken).
OFFLINE_BATCH_SIZE = 128
#: Texts per batch of the static model: its vectors take microseconds each, so a batch is
#: bounded by what one LanceDB merge should carry, not by the model.
STATIC_BATCH_SIZE = 1024


def embedding_model_id(settings: Settings) -> str:
    """What every vector records in its `model` column: all that changes a vector for the same text.

    A vector is kept while its (id, content_sha256, model) is current, so a setting that changes
    the vector of an unchanged text must change this id, or a run would keep the old vectors and
    verify them: offline, `embed.offline_model` (with `embed.long_text` for the transformer, and
    the static model's recipe); with an API, the model and
    `llm.embedding_dimensions` (`text-embedding-3-small@32d`; the bare name when it is unset).
    """
    if settings.llm.provider == "offline":
        if settings.embed.offline_model == "minilm-static":
            from graphrag_flow.stages.embed.static_model import static_model_id

            return static_model_id()
        from graphrag_flow.stages.embed.offline_model import offline_model_id

        return offline_model_id(settings.embed.long_text)
    dimensions = settings.llm.embedding_dimensions
    return f"{settings.llm.embedding_model}@{dimensions}d" if dimensions else settings.llm.embedding_model


class OfflineBackend:
    """A local model, run in a worker thread (never on the event loop): `embed.offline_model`.

    The model is loaded when the first text is planned or embedded: a run with nothing new to
    embed, such as a re-run on unchanged documents, never loads it.

    The transformer (`minilm`) runs one batch per core at a time, one single-threaded call per
    core (see offline_model.py), so a field alone keeps every core busy; fields side by side
    share them. The static model (`minilm-static`) takes milliseconds a batch: one at a time."""

    def __init__(self, settings: Settings):
        from graphrag_flow.stages.embed.offline_model import DIMENSION, model_cores

        self._static = settings.embed.offline_model == "minilm-static"
        self._long_text = settings.embed.long_text
        self.model = embedding_model_id(settings)
        self.dimension = DIMENSION
        self.concurrency = 1 if self._static else model_cores()

    @property
    def embedder(self):
        """The process's one instance, loaded on first use."""
        if self._static:
            from graphrag_flow.stages.embed.static_model import get_static_embedder

            return get_static_embedder()
        from graphrag_flow.stages.embed.offline_model import get_offline_embedder

        return get_offline_embedder(self._long_text)

    def plan(self, texts: list[str]) -> list[list[int]]:
        """Batches of the texts, a function of the texts alone, so a resumed run plans the same
        batches for what is left.

        Static: in input order. Transformer: texts of similar length (shortest first), so the
        model pads little: in input order, a batch of entity descriptions mixes short and long
        texts and the model spends much of its time on padding. Sorted on the word pieces the
        model will see (tokenized in the stage's worker thread); batch composition does not
        change a vector (offline_model.py's docstring).
        """
        if self._static:
            return [list(range(i, min(i + STATIC_BATCH_SIZE, len(texts)))) for i in range(0, len(texts), STATIC_BATCH_SIZE)]
        counts = self.embedder.piece_counts(texts)
        # Equal texts sort next to each other, so they share a batch and are embedded once.
        order = sorted(range(len(texts)), key=lambda i: (min(counts[i], self.embedder.max_tokens), texts[i], i))
        return [order[i : i + OFFLINE_BATCH_SIZE] for i in range(0, len(order), OFFLINE_BATCH_SIZE)]

    async def embed_batch(self, texts: list[str], item: str) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, texts)


class OpenAIBackend:
    """Batches by count and tokens, sent through the run's one client and limiter."""

    def __init__(self, settings: Settings, client, stage: str):
        self._client = client
        self._stage = stage
        self._settings = settings.llm
        self.model = embedding_model_id(settings)
        self.dimension = settings.llm.embedding_dimensions
        self.concurrency = settings.llm.max_concurrency

    def plan(self, texts: list[str]) -> list[list[int]]:
        from graphrag_flow.llm import plan_batches

        return plan_batches(texts, self._settings.embedding_batch_size, self._settings.embedding_batch_max_tokens)

    async def embed_batch(self, texts: list[str], item: str) -> np.ndarray:
        vectors = await self._client.embed(self._stage, texts, item)
        return np.asarray(vectors, dtype=np.float32)
