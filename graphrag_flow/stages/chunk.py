"""The chunk stage: token windows over each document, with content-derived text-unit ids.

Windows are counted in the run's one tokenizer, cl100k_base (graphrag_flow/llm/tokens.py): the
same count the LLM client truncates and batches by.
"""

from __future__ import annotations

import pandas as pd

from graphrag_flow.config import ChunkSettings
from graphrag_flow.hashing import sha256_parts
from graphrag_flow.llm import get_encoding

TEXT_UNIT_COLUMNS = ["id", "text", "n_tokens", "document_id", "chunk_index", "content_sha256"]


def token_windows(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of `size` tokens, each starting `size - overlap` after the last."""
    step = size - overlap
    windows = []
    start = 0
    while start < n_tokens:
        end = min(start + size, n_tokens)
        windows.append((start, end))
        if end == n_tokens:
            break
        start += step
    return windows


def chunk_document(document_id: str, text: str, settings: ChunkSettings) -> list[dict]:
    enc = get_encoding()
    tokens = enc.encode(text, disallowed_special=())
    rows = []
    for index, (start, end) in enumerate(token_windows(len(tokens), settings.size, settings.overlap)):
        chunk_text = enc.decode(tokens[start:end])
        unit_id = sha256_parts(document_id, index, chunk_text)
        rows.append(
            {
                "id": unit_id,
                "text": chunk_text,
                "n_tokens": end - start,
                "document_id": document_id,
                "chunk_index": index,
                "content_sha256": sha256_parts(chunk_text),
            }
        )
    return rows


def chunk_documents(documents: pd.DataFrame, settings: ChunkSettings) -> pd.DataFrame:
    rows: list[dict] = []
    for doc_id, text in zip(documents["id"], documents["text"]):
        rows.extend(chunk_document(doc_id, text, settings))
    frame = pd.DataFrame(rows, columns=TEXT_UNIT_COLUMNS)
    frame["n_tokens"] = frame["n_tokens"].astype("int64")
    frame["chunk_index"] = frame["chunk_index"].astype("int64")
    return frame
