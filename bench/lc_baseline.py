"""The LangChain tutorial pipeline to compare against: bpd_rag.evaluation.baseline when it is installed.

That module (RecursiveCharacterTextSplitter 1000/200 -> the same embedder -> Chroma top 4 -> the same
extractive answerer) is the evaluation's yardstick; the copy here is the minimal equivalent used only
when that module cannot be imported, so the benchmark still runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from bpd_rag.answering.extractive import ExtractiveAnswerer
from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import Embedder
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Chunk, Message, Passage


class Baseline(Protocol):
    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer: ...


def source() -> str:
    """Which baseline `build` uses."""
    try:
        import bpd_rag.evaluation.baseline  # noqa: F401
    except ImportError:
        return "bench/lc_baseline.py (minimal equivalent)"
    return "bpd_rag.evaluation.baseline"


def build(settings: Settings, embedder: Embedder) -> tuple[Baseline, str]:
    """The baseline over the settings' corpus, and where it came from."""
    try:
        from bpd_rag.evaluation.baseline import build_baseline
    except ImportError:
        return _MinimalBaseline(settings, embedder), "bench/lc_baseline.py (minimal equivalent)"
    return build_baseline(settings, embedder), "bpd_rag.evaluation.baseline"


class _MinimalBaseline:
    """RecursiveCharacterTextSplitter(1000, 200) -> Chroma (in memory) similarity top 4 -> ExtractiveAnswerer."""

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        import chromadb
        from langchain_chroma import Chroma
        from langchain_core.documents import Document as LCDocument
        from langchain_core.embeddings import Embeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        class _Embeddings(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return embedder.embed_documents(texts)

            def embed_query(self, text: str) -> list[float]:
                return embedder.embed_query(text)

        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
        self.chunks: dict[str, Chunk] = {}
        for doc in load_corpus(settings.corpus_dir).documents:
            for index, part in enumerate(splitter.split_documents([LCDocument(page_content=doc.text)])):
                start = int(part.metadata["start_index"])
                chunk_id = f"{doc.doc_id}:lc{index}"
                self.chunks[chunk_id] = Chunk(
                    chunk_id=chunk_id,
                    doc_id=doc.doc_id,
                    index=index,
                    text=part.page_content,
                    start=start,
                    end=start + len(part.page_content),
                    title=doc.title,
                    source_type=doc.source_type,
                    publisher=doc.publisher,
                )
        client: Any = chromadb.EphemeralClient(settings=chromadb.Settings(anonymized_telemetry=False))
        self.store = Chroma(
            collection_name=f"bench-baseline-{uuid.uuid4().hex[:8]}", embedding_function=_Embeddings(), client=client
        )
        self.store.add_texts([c.text for c in self.chunks.values()], ids=list(self.chunks))
        self.answerer = ExtractiveAnswerer(
            embedder,
            settings.prompts_dir,
            max_sentences=settings.answer.max_sentences,
            min_score=settings.answer.min_sentence_score,
        )

    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer:
        found = self.store.similarity_search_with_score(message, k=4)
        passages = [Passage(chunk=self.chunks[str(doc.id)], score=-float(distance)) for doc, distance in found]
        return self.answerer.answer(message, passages)
