"""Sentence splitting and chunking: offsets, headings, the token window."""

from __future__ import annotations

import pytest

from bpd_rag.chunking import chunk_document
from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import HashEmbedder, SentenceTransformerEmbedder
from bpd_rag.index import embedding_text
from bpd_rag.settings import Settings
from bpd_rag.textutil import split_sentences
from bpd_rag.types import Document
from tests.conftest import CORPUS


def test_sentences_respect_abbreviations_and_numbers() -> None:
    text = "Dr. Smith gave 0.5 mg/kg over 40 minutes. It worked (p < 0.001). Next, e.g. this one! “Quoted.” Done"
    assert split_sentences(text) == [
        "Dr. Smith gave 0.5 mg/kg over 40 minutes.",
        "It worked (p < 0.001).",
        "Next, e.g. this one!",
        "“Quoted.”",
        "Done",
    ]


def test_sentences_never_join_lines() -> None:
    assert split_sentences("A heading\nA sentence that follows.") == ["A heading", "A sentence that follows."]


def _doc(text: str) -> Document:
    return Document(doc_id="d", title="T", text=text, content_hash="abc123")


def test_chunks_are_verbatim_spans_with_their_heading() -> None:
    text = (
        "Intro sentence one. Intro two.\n\n## Safety\n\nSafety sentence. Another safety sentence."
        "\n\n## Dose\n\nDose text."
    )
    chunks = chunk_document(_doc(text), HashEmbedder().count_tokens, max_tokens=200)
    assert [c.heading for c in chunks] == [None, "Safety", "Dose"]
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert "##" not in chunk.text  # heading lines are context, not content


def test_small_budget_splits_with_overlap_and_oversized_sentences() -> None:
    sentences = [f"Sentence number {i} says something about ketamine." for i in range(12)]
    text = " ".join(sentences) + " " + " ".join(["word"] * 80) + "."
    count = HashEmbedder().count_tokens
    chunks = chunk_document(_doc(text), count, max_tokens=40, overlap_sentences=1)
    assert len(chunks) > 3
    assert all(count(c.text) <= 40 for c in chunks)
    assert chunks[1].text.startswith(chunks[0].text.split(". ")[-1].rstrip("."))  # one sentence of overlap
    assert all(text[c.start : c.end] == c.text for c in chunks)


@pytest.mark.real_model
def test_every_corpus_chunk_fits_the_minilm_window(real_embedder: SentenceTransformerEmbedder) -> None:
    """MiniLM truncates at 256 tokens: a chunk over the window would be embedded only in part."""
    budget = Settings(_env_file=None).chunking.max_tokens  # type: ignore[call-arg]
    for doc in load_corpus(CORPUS).documents:
        for chunk in chunk_document(doc, real_embedder.count_tokens, max_tokens=budget):
            assert real_embedder.count_tokens(chunk.text) <= budget
            # What is embedded (publisher and heading in front) must fit the window too.
            assert real_embedder.count_tokens(embedding_text(chunk)) <= real_embedder.max_tokens
