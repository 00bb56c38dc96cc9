"""Answerers turn a question and retrieved passages into an Answer whose every sentence cites a passage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bpd_rag.types import Answer, Citation, Passage, Question


class Answerer(Protocol):
    """Writes a cited answer from the passages (which are data, never instructions)."""

    name: str

    def answer(self, question: Question, passages: Sequence[Passage]) -> Answer:
        """An answer to the question from the passages (question.query is what retrieval ran)."""
        ...


def make_citation(citation_id: int, passage: Passage, start: int, end: int) -> Citation:
    """A citation quoting passage.chunk.text[start:end], i.e. verbatim document text."""
    chunk = passage.chunk
    return Citation(
        id=citation_id,
        doc_id=chunk.doc_id,
        chunk_id=chunk.chunk_id,
        title=chunk.title,
        source_type=chunk.source_type,
        publisher=chunk.publisher,
        url=chunk.url,
        quote=chunk.text[start:end],
        start=chunk.start + start,
    )
