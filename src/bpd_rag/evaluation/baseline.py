"""The plain LangChain RAG recipe, as a yardstick for our retrieval and safety layers.

RecursiveCharacterTextSplitter (1000 characters, 200 overlap) -> the same embedder wrapped as a LangChain
``Embeddings`` -> Chroma (langchain-chroma, in memory) similarity top 4 -> the same ExtractiveAnswerer.
No BM25, no fusion, no spelling correction, no follow-up query resolution, no safety triage: whatever our
pipeline scores above this is what those layers are worth. The answer format (citations, disclaimer on
answers) is the pipeline's, so the comparison measures retrieval and safety, not presentation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.embeddings import Embeddings

from bpd_rag.answering.extractive import ExtractiveAnswerer
from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import Embedder
from bpd_rag.prompts import load_prompt
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Chunk, Document, Message, Passage, Question

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200
TOP_K = 4


class EmbedderEmbeddings(Embeddings):
    """Our Embedder as a LangChain Embeddings (queries and documents embedded the way the pipeline does)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text)


def split_documents(
    documents: Sequence[Document], chunk_size: int = CHUNK_SIZE, chunk_overlap: int = CHUNK_OVERLAP
) -> list[Chunk]:
    """LangChain's RecursiveCharacterTextSplitter over each document body, kept as Chunks with offsets."""
    from langchain_core.documents import Document as LCDocument
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)
    chunks: list[Chunk] = []
    for doc in documents:
        for index, part in enumerate(splitter.split_documents([LCDocument(page_content=doc.text)])):
            start = int(part.metadata["start_index"])
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}:lc{index}",
                    doc_id=doc.doc_id,
                    index=index,
                    text=part.page_content,
                    start=start,
                    end=start + len(part.page_content),
                    title=doc.title,
                    source_type=doc.source_type,
                    url=doc.url,
                    publisher=doc.publisher,
                )
            )
    return chunks


class BaselinePipeline:
    """Answers like Pipeline.ask, the plain way: the raw message, dense top-k, the extractive answerer."""

    name = "baseline"

    def __init__(
        self,
        documents: Sequence[Document],
        embedder: Embedder,
        answerer: ExtractiveAnswerer,
        disclaimer: str = "",
        k: int = TOP_K,
        chunk_size: int = CHUNK_SIZE,
        chunk_overlap: int = CHUNK_OVERLAP,
    ) -> None:
        import chromadb
        from langchain_chroma import Chroma

        self.answerer = answerer
        self.disclaimer = disclaimer
        self.k = k
        self.chunks = split_documents(documents, chunk_size, chunk_overlap)
        self._by_id = {c.chunk_id: c for c in self.chunks}
        # In memory: the baseline is rebuilt for every run, and nothing should touch the real index.
        self._client: Any = chromadb.EphemeralClient(settings=chromadb.Settings(anonymized_telemetry=False))
        self._collection = f"baseline-{uuid.uuid4().hex}"
        self.store = Chroma(
            collection_name=self._collection, embedding_function=EmbedderEmbeddings(embedder), client=self._client
        )
        if self.chunks:
            self.store.add_texts(
                [c.text for c in self.chunks],
                metadatas=[{"doc_id": c.doc_id} for c in self.chunks],
                ids=[c.chunk_id for c in self.chunks],
            )

    def retrieve(self, message: str) -> list[Passage]:
        """The k chunks most similar to the raw message (Chroma's similarity search)."""
        if not self.chunks:
            return []
        found = self.store.similarity_search_with_score(message, k=self.k)
        return [Passage(chunk=self._by_id[str(doc.id)], score=-float(distance)) for doc, distance in found]

    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer:
        """Answer the message alone (the plain recipe ignores earlier turns)."""
        question = Question(text=message, history=list(history), query=message)
        answer = self.answerer.answer(question, self.retrieve(message))
        if answer.kind == "answer" and self.disclaimer:
            answer = answer.model_copy(update={"disclaimer": self.disclaimer})
        return answer

    def close(self) -> None:
        """Drop the in-memory collection."""
        self._client.delete_collection(self._collection)


def build_baseline(settings: Settings, embedder: Embedder) -> BaselinePipeline:
    """The baseline over the settings' corpus folder, with the pipeline's embedder and answerer settings."""
    documents = load_corpus(settings.corpus_dir).documents
    answerer = ExtractiveAnswerer(
        embedder,
        settings.prompts_dir,
        max_sentences=settings.answer.max_sentences,
        min_score=settings.answer.min_sentence_score,
    )
    return BaselinePipeline(documents, embedder, answerer, load_prompt(settings.prompts_dir, "disclaimer.txt"))
