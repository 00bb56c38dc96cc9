"""Document -> Chunks: sentence-aware, within the embedder's token window, offsets into the document."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from bpd_rag.textutil import sentence_spans
from bpd_rag.types import Chunk, Document

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class _Sentence:
    start: int
    end: int
    tokens: int
    heading: str | None


def _sections(text: str) -> list[tuple[str | None, int, int]]:
    """(heading, start, end) of the text between Markdown headings; heading lines are not content."""
    sections: list[tuple[str | None, int, int]] = []
    heading: str | None = None
    cursor = 0
    for match in _HEADING.finditer(text):
        sections.append((heading, cursor, match.start()))
        heading = match.group(2).rstrip(":").strip()
        cursor = match.end()
    sections.append((heading, cursor, len(text)))
    return [s for s in sections if text[s[1] : s[2]].strip()]


def _split_long(text: str, start: int, end: int, count: Callable[[str], int], budget: int) -> list[tuple[int, int]]:
    """Break a sentence longer than the budget at word boundaries."""
    if count(text[start:end]) <= budget:
        return [(start, end)]  # nearly every sentence: one count instead of one per word
    pieces: list[tuple[int, int]] = []
    piece_start = start
    last_ok = start
    for match in re.finditer(r"\S+", text[start:end]):
        word_end = start + match.end()
        if count(text[piece_start:word_end]) > budget and last_ok > piece_start:
            pieces.append((piece_start, last_ok))
            piece_start = start + match.start()
        last_ok = word_end
    pieces.append((piece_start, end))
    return pieces


def chunk_document(
    document: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int = 128,
    overlap_sentences: int = 1,
) -> list[Chunk]:
    """Pack whole sentences into chunks of at most max_tokens, never across a section heading."""
    text = document.text
    chunks: list[Chunk] = []
    # A sentence is counted when it is checked for length and again as a piece: tokenize it once.
    count = functools.lru_cache(maxsize=4096)(count_tokens)

    def emit(group: list[_Sentence]) -> None:
        start, end = group[0].start, group[-1].end
        chunks.append(
            Chunk(
                chunk_id=f"{document.doc_id}::{document.content_hash[:12]}::{len(chunks):04d}",
                doc_id=document.doc_id,
                index=len(chunks),
                text=text[start:end],
                start=start,
                end=end,
                heading=group[0].heading,
                title=document.title,
                source_type=document.source_type,
                url=document.url,
                publisher=document.publisher,
                doc_hash=document.content_hash,
            )
        )

    for heading, sec_start, sec_end in _sections(text):
        sentences: list[_Sentence] = []
        for s_start, s_end in sentence_spans(text, sec_start, sec_end):
            for p_start, p_end in _split_long(text, s_start, s_end, count, max_tokens):
                sentences.append(_Sentence(p_start, p_end, count(text[p_start:p_end]), heading))
        group: list[_Sentence] = []
        for sentence in sentences:
            if group and count(text[group[0].start : sentence.end]) > max_tokens:
                emit(group)
                overlap = group[-overlap_sentences:] if overlap_sentences else []
                group = list(overlap)
                # The overlap is dropped where it would push the new chunk over the budget.
                while group and count(text[group[0].start : sentence.end]) > max_tokens:
                    group.pop(0)
            group.append(sentence)
        if group:
            emit(group)
    return chunks
