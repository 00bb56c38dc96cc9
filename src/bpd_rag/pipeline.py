"""build_pipeline(settings) wires corpus, index, retrieval and answering; Pipeline.ask is the one entry point."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

from bpd_rag.answering import Answerer
from bpd_rag.answering.extractive import ExtractiveAnswerer
from bpd_rag.corpus import load_errata
from bpd_rag.embeddings import Embedder, build_embedder, default_model_path
from bpd_rag.index import DocumentScanner, IngestReport, ProgressCallback, ingest
from bpd_rag.replies import Replies, renumbered
from bpd_rag.retrieval import Retriever, resolve_query
from bpd_rag.settings import Settings
from bpd_rag.store import VectorStore, open_store, release_embedded
from bpd_rag.support import EmbeddingLexicalSupport
from bpd_rag.textutil import load_known_words, split_sentences
from bpd_rag.types import Answer, Message, Passage, Question, ReplyReview, SafetyDecision


class Guard(Protocol):
    """The safety layer: decides what to do with a message and checks replies; never calls back into the pipeline."""

    def assess(self, message: str, history: Sequence[Message]) -> SafetyDecision:
        """Crisis, refuse or answer, with the risk tier (decided before any retrieval)."""
        ...

    def review(self, answer: Answer) -> ReplyReview:
        """What must change in a reply before it is sent."""
        ...

    def scan_document(self, document: object) -> list[str]:
        """Warnings about instruction-like text in a corpus document."""
        ...

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
        self.replies = Replies(settings.prompts_dir, settings.safety.locale)

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
            from bpd_rag.chat_models import build_chat_model

            return LLMAnswerer(
                build_chat_model(self.settings.llm),
                self.settings.prompts_dir,
                support=EmbeddingLexicalSupport(self.embedder),
                fallback=self.extractive,
                support_threshold=self.settings.answer.support_threshold,
                errata=self.extractive.errata,
            )
        return self.extractive

    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer:
        """Answer one message in the context of the conversation so far."""
        decision = self.guard.assess(message, history) if self.guard is not None else SafetyDecision()
        return self.reply(message, history, decision)

    def reply(self, message: str, history: Sequence[Message], decision: SafetyDecision) -> Answer:
        """The reply to a message the safety layer has decided about (the API decides before it queues)."""
        if decision.action == "crisis":
            return self.replies.crisis(decision)
        if decision.action == "refuse" and decision.category == "injection":
            answer = self.replies.injection()
        elif decision.action == "refuse":
            answer = self.replies.advice_refusal(self._general_information(message, decision))
        else:
            question = self.question_for(message, history)
            answer = self.answerer.answer(question, self._passages(question.query))
            if answer.kind == "answer":
                answer = answer.model_copy(update={"disclaimer": self.replies.disclaimer})
        footer = decision.footer
        if self.guard is not None:
            review = self.guard.review(answer)
            if review.leaks_prompt:
                return self.replies.injection()
            answer = renumbered(answer, review.drop_citations)
            if answer.kind == "answer" and not answer.citations:
                answer = self.replies.no_answer(answer.answerer)
            footer = footer or review.footer
        if decision.risk == "concern":
            return self.replies.with_concern(answer, decision)
        if footer and answer.kind == "answer":
            return self.replies.with_footer(answer, decision.language)
        return answer

    def _general_information(self, message: str, decision: SafetyDecision) -> Answer | None:
        """What the sources say in general terms beside a refusal of advice (no LLM, no safety layer)."""
        if decision.general_question is None:
            return None
        general = self.lookup(decision.general_question)
        if general.kind != "answer":
            # The question sentences of the message ("I weigh 70 kg. How much ...?" -> "How much ...?").
            asked = " ".join(s for s in split_sentences(message) if s.endswith("?")) or message
            general = self.lookup(asked)
        return general

    def warm_up(self) -> None:
        """Ready the safety checks, then load the index (raises IndexMissingError and the like, checks done)."""
        if self.guard is not None:
            self.guard.warm_up()  # needs no index: a crisis reply never waits for one
        self.retriever.snapshot()

    def query_for(self, message: str, history: Sequence[Message] = ()) -> str:
        """The standalone, spelling-corrected query retrieval embeds for a message."""
        return self.retriever.correct_spelling(resolve_query(message, history))

    def question_for(self, message: str, history: Sequence[Message] = ()) -> Question:
        """The user's words, the conversation and the retrieval query, as an answerer receives them."""
        return Question(text=message, history=list(history), query=self.query_for(message, history))

    def passages_for(self, message: str, history: Sequence[Message] = ()) -> tuple[str, list[Passage]]:
        """The standalone, spelling-corrected query and the passages the answerer gets for it."""
        query = self.query_for(message, history)
        return query, self._passages(query)

    def _passages(self, query: str) -> list[Passage]:
        return self.retriever.with_neighbours(self.retriever.retrieve(query))

    def lookup(self, question: str) -> Answer:
        """What the sources say about a question, from the offline answerer (no LLM, no safety layer)."""
        asked = self.question_for(question)
        return self.extractive.answer(asked, self._passages(asked.query))

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
