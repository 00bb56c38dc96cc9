"""build_pipeline(settings) wires corpus, index, retrieval and answering; Pipeline.ask is the one entry point."""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from bpd_rag.answering import Answerer
from bpd_rag.answering.cards import CardMatcher, CrossLingualMatcher, CrossLingualModel, Match, MatcherModel
from bpd_rag.answering.extractive import AnswerabilityModel, ExtractiveAnswerer, Outcomes
from bpd_rag.cards import Card, CardSet, load_cards
from bpd_rag.corpus import load_corpus, load_errata
from bpd_rag.embeddings import Embedder, build_embedder, default_model_path
from bpd_rag.errors import BpdRagError, ConfigurationError
from bpd_rag.fitted import packaged
from bpd_rag.index import DocumentScanner, IngestReport, ProgressCallback, ingest
from bpd_rag.replies import Replies, renumbered
from bpd_rag.retrieval import Retriever, load_shorthand, resolve_query
from bpd_rag.safety.risk import shared_multilingual
from bpd_rag.settings import Settings
from bpd_rag.store import VectorStore, open_store, release_embedded
from bpd_rag.support import CheckedSupport, Contradictions, EmbeddingLexicalSupport
from bpd_rag.textutil import load_known_words, looks_like_question, sentence_spans, split_sentences
from bpd_rag.types import Answer, Chunk, Document, Message, Passage, Question, ReplyReview, SafetyDecision

if TYPE_CHECKING:
    from bpd_rag.safety.guard import ConversationRisk


log = logging.getLogger(__name__)
_Model = TypeVar("_Model")


class Guard(Protocol):
    """The safety layer: decides what to do with a message and checks replies; never calls back into the pipeline."""

    def assess(
        self, message: str, history: Sequence[Message], conversation: ConversationRisk | None = None
    ) -> SafetyDecision:
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


# The words of an opening before a comma that a question is matched without ("hey there, what is bpd").
_OPENING_WORDS = 3
# A premise a question takes as true: a clause after "since" or "because" ("Since ketamine is FDA approved for
# BPD, why don't more doctors prescribe it?") or a statement with a tag question ("Ketamine was only invented a
# few years ago, right?"). The card on the premise says whether it holds.
_PREMISES = (
    re.compile(r"\b(?:since|because|given that|now that|considering that)\s+([^,?.;!]+)", re.I),
    re.compile(r"([^.?!;]+?)[,.]?\s+(?:right|correct|isn'?t it|is that true|true)\s*[?.!]*\s*(?:$|[.?!])", re.I),
)
# Who said the premise is not what it is about: "i read online it cures bpd, is that true" asks whether ketamine
# cures BPD, and the words "i read online" drew the card away from the claim.
_HEARSAY = re.compile(
    r"^\s*(?:(?:i|we)\s+(?:read|heard|saw|was told)|(?:some|any)(?:one|body)\s+(?:said|told me|says)|"
    r"(?:my|a|the)\s+\w+\s+(?:said|says|told me|thinks|claims))"
    r"(?:\s+(?:online|somewhere|on \w+|in \w+|from \w+))?(?:\s+that)?\s+",
    re.I,
)
# A shorter premise ("since last week") names no topic a card could settle.
_PREMISE_WORDS = 3
# Refusals whose general information is the card for their general question, before any card for the person's
# own words: "can my wife get ketamine" asks who can get it, and the card its words matched was about mood.
_GENERAL_CARD_FIRST = frozenset({"access"})


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
        self._snapshot: object | None = None  # the index snapshot the corpus caches were loaded with

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings.store, create=False)
        return self._store

    @cached_property
    def shorthand(self) -> dict[str, str]:
        """The reviewed shorthand list: questions and the cards' phrasings are read with it spelled out."""
        return load_shorthand(packaged("answering", "shorthand.yaml"))

    @cached_property
    def retriever(self) -> Retriever:
        # English words (the packaged MiniLM vocabulary) are never "corrected" into corpus words.
        english = load_known_words(default_model_path() / "vocab.txt")
        try:
            questions = [text for card in self.card_set.servable() for text in card.texts]
        except BpdRagError:  # no corpus folder here (a server reading a shared index): the index's words only
            questions = []
        return Retriever(
            self.store,
            self.embedder,
            self.settings.retrieval,
            english_words=english,
            shorthand=self.shorthand,
            question_texts=questions,
        )

    @cached_property
    def documents(self) -> dict[str, Document]:
        """The corpus documents by id (card quotes are checked against them and cite them)."""
        corpus = load_corpus(self.settings.corpus_dir, max_file_bytes=self.settings.ingest.max_file_bytes)
        return {d.doc_id: d for d in corpus.documents}

    @cached_property
    def card_set(self) -> CardSet:
        """The answer cards of the corpus folder (a broken one is left out and reported)."""
        cards = load_cards(self.settings.corpus_dir, list(self.documents.values()))
        for error in cards.errors:
            log.warning("answer card not served: %s", error)
        return cards

    @cached_property
    def card_model(self) -> MatcherModel | None:
        """The fitted card matcher shipped in the package (None: cards are never served)."""
        return _shipped(MatcherModel.load)

    @cached_property
    def card_matcher(self) -> CardMatcher:
        """Finds the reviewed card that answers a question, if one does (cards past review are not served)."""
        cache = Path(self.settings.store.path).parent / "cache"
        return CardMatcher(
            self.card_set.servable(),
            self.documents,
            self.embedder,
            self.card_model,
            cache_dir=cache,
            shorthand=self.shorthand,
        )

    @cached_property
    def cross_lingual_matcher(self) -> CrossLingualMatcher:
        """Finds the reviewed card for a question asked in another language (multilingual-e5, shared with the
        safety layer)."""
        cache = Path(self.settings.store.path).parent / "cache"
        model = _shipped(CrossLingualModel.load)
        return CrossLingualMatcher(self.card_set.servable(), shared_multilingual(), model, cache)

    @cached_property
    def extractive(self) -> ExtractiveAnswerer:
        return ExtractiveAnswerer(
            self.embedder,
            self.settings.prompts_dir,
            max_sentences=self.settings.answer.max_sentences,
            min_score=self.settings.answer.min_sentence_score,
            known_term=self.retriever.knows_term,
            errata=load_errata(self.settings.corpus_dir),
            evidence_of=self.evidence_of,
            findings=lambda: self.findings,
            outcomes=Outcomes.load(),
            model=self.answerability_model,
        )

    @cached_property
    def answerability_model(self) -> AnswerabilityModel | None:
        """The fitted answerability model shipped in the package (None: the unfitted score and minimum)."""
        return _shipped(AnswerabilityModel.load)

    def evidence_of(self, doc_id: str, offset: int | None) -> str:
        """The kind of evidence at an offset of a document (its front matter marks it)."""
        document = self.documents.get(doc_id)
        return document.evidence_at(offset) if document is not None else "unknown"

    @cached_property
    def findings(self) -> list[Passage]:
        """Every sentence of the corpus that reports a study's finding (randomized trial or uncontrolled study)."""
        out = []
        for document in self.documents.values():
            for start, end in sentence_spans(document.text):
                if document.evidence_at(start) in ("randomized_trial", "uncontrolled_study"):
                    out.append(_span_passage(document, start, end, f"{document.doc_id}@{start}", score=0.0))
        return out

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = self._build_answerer()
        return self._answerer

    def _build_answerer(self) -> Answerer:
        if self.settings.answer.backend == "llm":
            from bpd_rag.answering.llm import LLMAnswerer
            from bpd_rag.chat_models import build_chat_model

            model = build_chat_model(self.settings.llm)
            verifier = None
            if self.settings.answer.llm_verify:
                from bpd_rag.judge import LLMJudge

                verifier = LLMJudge(self.settings.llm, model)
            return LLMAnswerer(
                model,
                self.settings.prompts_dir,
                support=CheckedSupport(EmbeddingLexicalSupport(self.embedder), Contradictions.load()),
                verifier=verifier,
                fallback=self.extractive,
                support_threshold=self.settings.answer.support_threshold,
                errata=self.extractive.errata,
            )
        return self.extractive

    def ask(
        self, message: str, history: Sequence[Message] = (), conversation: ConversationRisk | None = None
    ) -> Answer:
        """Answer one message in the context of the conversation so far (and its risk kept on the server)."""
        return self.reply(message, history, self.assess(message, history, conversation))

    def assess(
        self, message: str, history: Sequence[Message] = (), conversation: ConversationRisk | None = None
    ) -> SafetyDecision:
        """The safety layer's decision on a message (recorded in the conversation's risk, when there is one)."""
        decision = self.guard.assess(message, history, conversation) if self.guard is not None else SafetyDecision()
        if conversation is not None:
            conversation.record(message, decision)
        return decision

    def reply(self, message: str, history: Sequence[Message], decision: SafetyDecision) -> Answer:
        """The reply to a message the safety layer has decided about (the API decides before it queues)."""
        if decision.action == "crisis":
            return self.replies.crisis(decision)
        foreign = ""  # the language of a question that got an English card (read by multilingual-e5)
        if decision.action == "refuse" and decision.category == "injection":
            answer = self.replies.injection()
        elif decision.action == "refuse":
            # The general information's citations already carry their kind of evidence (_general_information).
            answer = self.replies.advice_refusal(self._general_information(message, decision), decision.language)
        elif decision.statement:
            # Told of a diagnosis, nothing asked: what the bot can share, not a card on whatever the words match.
            answer = self.replies.statement()
        elif decision.risk == "concern" and not looks_like_question(message):
            # Distress told, nothing asked: no search, no "could not find"; a short greeting or goodbye gets the
            # resources without having distress read into it.
            return self.replies.greeting_check_in(message, decision) or self.replies.support(decision)
        else:
            question = self.question_for(message, history)
            match = self._card_for(question)
            # A question in another language (or leaning to one): the English card closest to it, read by
            # multilingual-e5.
            language = decision.language if decision.language != "en" else decision.leaning
            if match is None and language and not decision.smalltalk:
                match = self.cross_lingual_matcher.match(message)
                foreign = language if match is not None else ""
            # Small talk gives way to a card that answers the message: "hey there, what is bpd" is a question,
            # and "rosenblat = who? is he a real doctor" only reads like "are you a real person".
            smalltalk = self.replies.smalltalk(message, decision.smalltalk) if match is None else None
            answer = smalltalk or self._answer(question, match)
        footer = decision.footer
        if self.guard is not None:
            review = self.guard.review(answer)
            if review.leaks_prompt:
                return self.replies.injection()
            answer = renumbered(answer, review.drop_citations)
            if answer.kind == "answer" and not answer.citations:
                answer = self.replies.no_answer(answer.answerer)
            footer = footer or review.footer
        if answer.kind == "no_answer":
            answer = self.replies.in_language(answer, decision.language)
        elif foreign and answer.kind == "answer":
            answer = self.replies.in_english(answer, foreign)
        if decision.risk == "concern":
            return self.replies.with_concern(answer, decision)
        if footer and answer.kind == "answer":
            return self.replies.with_footer(answer, decision.language)
        return answer

    def _answer(self, question: Question, match: Match | None) -> Answer:
        """The reviewed card that matched, else the answerer's answer from the retrieved passages."""
        if match is not None and self.settings.answer.backend != "llm":
            answer = self.card_matcher.answer(match)
        else:
            passages = self._passages(question.query)
            if match is not None:  # the LLM gets the reviewed card's quotes first, as the passages to prefer
                passages = self._card_passages(match.card) + passages
            answer = self.answerer.answer(question, passages)
        if answer.kind == "answer":
            answer = answer.model_copy(update={"disclaimer": self.replies.disclaimer})
        return self.with_evidence(answer)

    def _card_for(self, question: Question) -> Match | None:
        """The reviewed card for the question: matched on the whole message, else on its last clause that asks
        something ("sounds like snake oil tbh. whats the actual evidence", "hey there, what is bpd"), else on a
        premise the question takes as true (_PREMISES), the likeliest card of any."""
        self._follow_index()  # no index, no answers: cards too are served only by a ready server
        match = self.card_matcher.match(question)
        if match is not None and _served_last(match.card, question.history):
            # The card just given, again: the follow-up asks something that card did not answer ("how big was the
            # study" after the card on its limits). The card for what the message asks on its own, if one answers it.
            alone = self.card_matcher.match(self.question_for(question.text))
            if alone is not None and alone.card.id != match.card.id:
                return alone
        if match is not None:
            return match
        parts = [p.strip() for p in re.split(r"[.;!?\n]+", question.text) if len(p.split()) >= 2]
        if len(parts) == 1:  # one sentence: a short opening before a comma ("hey there", "ok so") is left out
            opening, _, rest = parts[0].partition(",")
            if rest and len(opening.split()) <= _OPENING_WORDS and not looks_like_question(opening):
                parts = [opening, rest.strip()]
        asked = next((p for p in reversed(parts) if looks_like_question(p)), None)
        if asked is not None and len(parts) >= 2:
            match = self.card_matcher.match(self.question_for(asked, question.history))
            if match is not None:
                return match
        premises = [
            _HEARSAY.sub("", m.group(1)).strip() for pattern in _PREMISES for m in pattern.finditer(question.text)
        ]
        found = [
            self.card_matcher.match(self.question_for(premise, question.history))
            for premise in premises
            if len(premise.split()) >= _PREMISE_WORDS
        ]
        return max((m for m in found if m is not None), key=lambda m: m.probability, default=None)

    def _card_passages(self, card: Card) -> list[Passage]:
        """The quotes a reviewed card rests on, as passages (verbatim text of their documents, with offsets)."""
        out = []
        for n, quote in card.quotes.items():
            document = self.documents[quote.doc_id]
            start = document.text.index(quote.text)
            out.append(_span_passage(document, start, start + len(quote.text), f"{card.id}#quote-{n}", score=1.0))
        return out

    def with_evidence(self, answer: Answer) -> Answer:
        """The answer's citations marked with the kind of evidence each quote is."""
        citations = [c.model_copy(update={"evidence": self.evidence_of(c.doc_id, c.start)}) for c in answer.citations]
        return answer.model_copy(update={"citations": citations})

    def _general_information(self, message: str, decision: SafetyDecision) -> Answer | None:
        """What the sources say in general terms beside a refusal of advice (no LLM, no safety layer), its citations
        marked with their kind of evidence."""
        if decision.general_question is None:
            return None
        # The question sentences of the message ("I weigh 70 kg. How much ...?" -> "How much ...?").
        asked = " ".join(s for s in split_sentences(message) if s.endswith("?")) or message
        self._follow_index()
        if decision.category in _GENERAL_CARD_FIRST:
            general_card = self.card_matcher.match(self.question_for(decision.general_question))
            if general_card is not None:
                return self.with_evidence(self.card_matcher.answer(general_card))
        match = self.card_matcher.match(self.question_for(asked))  # a reviewed card on what was asked, if one fits
        if match is not None and match.card.kind == "answer":
            return self.with_evidence(self.card_matcher.answer(match))
        general = self.lookup(decision.general_question)
        if general.kind != "answer":
            general = self.lookup(asked)
        return self.with_evidence(general)

    def warm_up(self) -> None:
        """Ready the safety checks, then load the index (raises IndexMissingError and the like, checks done)."""
        if self.guard is not None:
            self.guard.warm_up()  # needs no index: a crisis reply never waits for one
        self._follow_index()
        self.card_matcher.prepare()
        if self.guard is not None:  # questions in other languages come through the safety layer's language check
            # A few seconds the first time (cached on disk after): in the background, so the server is ready
            # for English at once; a question in another language asked meanwhile waits for it.
            threading.Thread(target=self._prepare_cross_lingual, name="cards-multilingual", daemon=True).start()

    def _prepare_cross_lingual(self) -> None:
        try:
            self.cross_lingual_matcher.prepare()
        except Exception:  # a background warm-up must not die silently; the first question tries again
            log.exception("reading the answer cards with the multilingual model failed")

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
        self._follow_index()
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
            max_file_bytes=self.settings.ingest.max_file_bytes,
        )
        self._store = store
        self._forget_loaded()
        report.errors += self.card_set.errors  # a card whose quote is no longer in its source fails the ingest
        return report

    def _forget_loaded(self, retriever: bool = True) -> None:
        """Drop what was loaded from the old index and corpus: the next question loads them anew."""
        for loaded in ("documents", "card_set", "card_matcher", "cross_lingual_matcher", "findings", "extractive"):
            self.__dict__.pop(loaded, None)
        old = self.__dict__.pop("retriever", None) if retriever else None
        if old is not None:
            old.close()  # its background watcher and its Chroma instance

    def _follow_index(self) -> None:
        """Load the corpus again when the retriever has picked up another ingest (by another process, too):
        a document removed from the index is then never quoted by a card or a finding either."""
        snapshot = self.retriever.snapshot()
        if self._snapshot is not None and snapshot is not self._snapshot:
            self._forget_loaded(retriever=False)
        self._snapshot = snapshot

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
        self._forget_loaded()
        return report


def _served_last(card: Card, history: Sequence[Message]) -> bool:
    """Whether the bot's last reply was this card: its first statement is in the reply (after any check-in)."""
    if not history or history[-1].role != "assistant" or not card.statements:
        return False
    return card.statements[0].text.strip() in history[-1].content


def _shipped(load: Callable[[], _Model]) -> _Model | None:
    """A fitted model shipped in the package, or None with a warning that says how to refit it."""
    try:
        return load()
    except ConfigurationError as exc:
        log.warning("%s", exc)
        return None


def _span_passage(document: Document, start: int, end: int, chunk_id: str, score: float) -> Passage:
    """A passage of one span of a document's text (a sentence, a card's quote), with its offsets."""
    chunk = Chunk(
        chunk_id=chunk_id,
        doc_id=document.doc_id,
        index=-1,
        text=document.text[start:end],
        start=start,
        end=end,
        title=document.title,
        source_type=document.source_type,
        url=document.url,
        publisher=document.publisher,
    )
    return Passage(chunk=chunk, score=score)


def build_pipeline(settings: Settings | None = None, embedder: Embedder | None = None) -> Pipeline:
    """A pipeline from settings (the environment when none are given), with safety triage unless it is off."""
    from bpd_rag.safety import SafetyGuard  # the guard is attached only here, so only here is safety needed

    settings = settings or Settings()
    embedder = embedder or build_embedder(settings.embedding)
    # Only the settings switch triage off (and ensure_safe_to_serve refuses that for a server).
    guard = SafetyGuard(settings, embedder) if settings.safety.triage_enabled else None
    return Pipeline(settings, embedder, guard=guard)
