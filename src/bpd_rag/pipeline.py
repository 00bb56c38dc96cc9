"""build_pipeline(settings) wires corpus, index, retrieval and answering; Pipeline.ask is the one entry point."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

from bpd_rag.answering import Answerer
from bpd_rag.answering.extractive import ExtractiveAnswerer
from bpd_rag.corpus import load_errata
from bpd_rag.embeddings import Embedder, build_embedder, default_model_path
from bpd_rag.index import DocumentScanner, IngestReport, ProgressCallback, ingest
from bpd_rag.prompts import load_prompt
from bpd_rag.retrieval import Retriever, resolve_query
from bpd_rag.settings import Settings
from bpd_rag.store import VectorStore, open_store, release_embedded
from bpd_rag.support import EmbeddingLexicalSupport
from bpd_rag.textutil import load_known_words
from bpd_rag.types import Answer, Message, Passage

# Answers a question from the sources (retrieval + the extractive answerer), for replies that add
# general information to a refusal.
Lookup = Callable[[str], Answer]


class Guard(Protocol):
    """Safety checks around answering: may answer a message itself before retrieval, and checks replies."""

    def before(
        self, message: str, history: Sequence[Message], lookup: Lookup, upcoming_query: str | None = None
    ) -> Answer | None:
        """An answer of its own (crisis, refusal) or None; upcoming_query is what retrieval embeds next."""
        ...

    def after(self, message: str, history: Sequence[Message], answer: Answer) -> Answer: ...

    def scan_document(self, document: object) -> list[str]: ...

    def warm_up(self) -> None:
        """Prepare what the first message would otherwise wait for."""
        ...


class Pipeline:
    """corpus -> chunks -> index -> retrieve -> answer -> safety check -> reply."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        answerer: Answerer | None = None,
        store: VectorStore | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self._store = store
        self._answerer = answerer
        self.guard = guard
        self.disclaimer = load_prompt(settings.prompts_dir, "disclaimer.txt")

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings.store, create=False)
        return self._store

    @cached_property
    def retriever(self) -> Retriever:
        # English words (the packaged MiniLM vocabulary) are never "corrected" into corpus words.
        english = load_known_words(default_model_path() / "vocab.txt")
        return Retriever(self.store, self.embedder, self.settings.retrieval, english_words=english)

    @cached_property
    def extractive(self) -> ExtractiveAnswerer:
        return ExtractiveAnswerer(
            self.embedder,
            self.settings.prompts_dir,
            max_sentences=self.settings.answer.max_sentences,
            min_score=self.settings.answer.min_sentence_score,
            known_term=self.retriever.knows_term,
            errata=load_errata(self.settings.corpus_dir),
        )

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = self._build_answerer()
        return self._answerer

    def _build_answerer(self) -> Answerer:
        if self.settings.answer.backend == "llm":
            from bpd_rag.answering.llm import LLMAnswerer

            return LLMAnswerer(
                self.settings.llm,
                self.settings.prompts_dir,
                support=EmbeddingLexicalSupport(self.embedder),
                fallback=self.extractive,
                support_threshold=self.settings.answer.support_threshold,
                errata=self.extractive.errata,
            )
        return self.extractive

    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer:
        """Answer one message in the context of the conversation so far."""
        if self.guard is not None:
            hint = self._query_hint(message, history)
            early = self.guard.before(message, history, self.lookup, upcoming_query=hint)
            if early is not None:
                return early
        query = self.query_for(message, history)
        answer = self.answerer.answer(query, self._passages(query))
        if answer.kind == "answer":
            answer = answer.model_copy(update={"disclaimer": self.disclaimer})
        if self.guard is not None:
            answer = self.guard.after(message, history, answer)
        return answer

    def warm_up(self) -> None:
        """Ready the safety checks, then load the index (raises IndexMissingError and the like, checks done)."""
        if self.guard is not None:
            self.guard.warm_up()  # needs no index: a crisis reply never waits for one
        self.retriever.snapshot()

    def query_for(self, message: str, history: Sequence[Message] = ()) -> str:
        """The standalone, spelling-corrected query retrieval embeds for a message."""
        return self.retriever.correct_spelling(resolve_query(message, history))

    def _query_hint(self, message: str, history: Sequence[Message]) -> str | None:
        """The query retrieval will embed, from the index already in memory (None before its first load).

        It never touches the store: the crisis check it is for must not wait on a slow or dead Chroma
        server, and needs no index at all. A stale guess costs one extra model run, nothing else.
        """
        retriever: Retriever | None = self.__dict__.get("retriever")
        speller = retriever.loaded_speller() if retriever is not None else None
        return speller.correct(resolve_query(message, history)) if speller is not None else None

    def passages_for(self, message: str, history: Sequence[Message] = ()) -> tuple[str, list[Passage]]:
        """The standalone, spelling-corrected query and the passages the answerer gets for it."""
        query = self.query_for(message, history)
        return query, self._passages(query)

    def _passages(self, query: str) -> list[Passage]:
        return self.retriever.with_neighbours(self.retriever.retrieve(query))

    def lookup(self, question: str) -> Answer:
        """What the sources say about a question, from the offline answerer (no LLM, no safety layer)."""
        query, passages = self.passages_for(question)
        return self.extractive.answer(query, passages)

    def ingest(self, progress: ProgressCallback | None = None, rebuild: bool = False) -> IngestReport:
        """Bring the index in line with the corpus folder (everything re-embedded with rebuild)."""
        if rebuild and not self.settings.store.chroma_url:
            return self._rebuild_embedded(progress)
        store = self._store or open_store(self.settings.store, create=True)
        if rebuild:
            store.drop()
        scanner: DocumentScanner | None = self.guard.scan_document if self.guard is not None else None
        report = ingest(
            self.settings.corpus_dir,
            store,
            self.embedder,
            self.settings.chunking.max_tokens,
            self.settings.chunking.overlap_sentences,
            progress=progress,
            scanner=scanner,
        )
        self._store = store
        self.__dict__.pop("retriever", None)  # the next question loads the new manifest
        return report

    def _rebuild_embedded(self, progress: ProgressCallback | None) -> IngestReport:
        """Build a fresh index beside the old one and swap folders, so a failed rebuild loses nothing."""
        live = Path(self.settings.store.path)
        fresh = live.with_name(live.name + ".rebuild")
        shutil.rmtree(fresh, ignore_errors=True)
        settings = self.settings.model_copy(update={"store": self.settings.store.model_copy(update={"path": fresh})})
        builder = Pipeline(settings, self.embedder, guard=self.guard)
        report = builder.ingest(progress)
        for store in (builder._store, self._store):
            close = getattr(store, "close", None)
            if close is not None:
                close()
        release_embedded(fresh)
        release_embedded(live)
        old = live.with_name(live.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if live.exists():
            live.rename(old)
        fresh.rename(live)
        shutil.rmtree(old, ignore_errors=True)
        self._store = None
        self.__dict__.pop("retriever", None)
        return report


def build_pipeline(settings: Settings | None = None, embedder: Embedder | None = None) -> Pipeline:
    """A pipeline from settings (the environment when none are given), with safety triage unless it is off."""
    from bpd_rag.safety import SafetyGuard  # the guard is attached only here, so only here is safety needed

    settings = settings or Settings()
    embedder = embedder or build_embedder(settings.embedding)
    # Only the settings switch triage off (and ensure_safe_to_serve refuses that for a server).
    guard = SafetyGuard(settings, embedder) if settings.safety.triage_enabled else None
    return Pipeline(settings, embedder, guard=guard)
