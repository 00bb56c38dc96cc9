"""Retrieval metrics against gold quotes: hit@k, recall@k and MRR of the passages that answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class Located(Protocol):
    """Anything that stands at a place in a document: a Chunk, or a cited quote (doc_id, start, end)."""

    @property
    def doc_id(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


@dataclass(frozen=True)
class Span:
    doc_id: str
    start: int
    end: int


def locate_quotes(texts: Mapping[str, str], doc_ids: Sequence[str], quotes: Sequence[str]) -> list[Span]:
    """Where each gold quote stands in the expected documents (a quote found nowhere is an error)."""
    spans: list[Span] = []
    for quote in quotes:
        found = [
            Span(d, texts[d].find(quote), texts[d].find(quote) + len(quote))
            for d in doc_ids
            if d in texts and quote in texts[d]
        ]
        if not found:
            raise ValueError(f"gold quote not found in {list(doc_ids)}: {quote!r}")
        spans.extend(found[:1])
    return spans


def covers(chunk: Located, span: Span) -> bool:
    """A chunk answers when it holds at least half of the gold quote."""
    if chunk.doc_id != span.doc_id:
        return False
    overlap = min(chunk.end, span.end) - max(chunk.start, span.start)
    return overlap >= (span.end - span.start) / 2


def first_hit_rank(chunks: Sequence[Located], spans: Sequence[Span]) -> int | None:
    """1-based rank of the first chunk that covers any gold span."""
    for rank, chunk in enumerate(chunks, start=1):
        if any(covers(chunk, s) for s in spans):
            return rank
    return None


def recall(chunks: Sequence[Located], spans: Sequence[Span]) -> float:
    """Share of gold spans covered by some chunk."""
    if not spans:
        return 0.0
    return sum(any(covers(c, s) for c in chunks) for s in spans) / len(spans)


def reciprocal_rank(chunks: Sequence[Located], spans: Sequence[Span]) -> float:
    """1 / rank of the first chunk that covers a gold span; 0 when none does."""
    rank = first_hit_rank(chunks, spans)
    return 1 / rank if rank else 0.0
