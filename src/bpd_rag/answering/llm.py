"""LLMAnswerer: writes the answer with any OpenAI-compatible chat endpoint, then keeps only sentences the
cited passages support, so the reply never says more than the documents do."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bpd_rag.answering import Answerer, make_citation
from bpd_rag.chat_models import ChatMessage, ChatModel
from bpd_rag.corpus import Erratum, in_errata
from bpd_rag.errors import LLMUnavailableError
from bpd_rag.markers import cited_sentences
from bpd_rag.prompts import load_prompt
from bpd_rag.support import SupportScorer
from bpd_rag.textutil import sentence_spans
from bpd_rag.types import Answer, Citation, Message, Passage, Question, Statement, source_type_label

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "answer_system.txt"
USER_PROMPT = "answer_user.txt"
USER_PROMPT_VARIABLES = frozenset({"passages", "question", "conversation"})
# Earlier turns shown to the model, and how much of each (the reader's own words; replies are long).
CONVERSATION_TURNS = 6
_TURN_CHARS = 600

# The sentence answer_system.txt tells the model to reply with when the passages do not answer; it has
# no citation by design, so the post-check recognises it instead of counting it as unsupported.
NO_ANSWER_SENTENCE = "The sources I have do not answer this question."

UNAVAILABLE_NOTICE = "The language model was unavailable, so this answer was assembled directly from the sources."
UNSOURCED_NOTICE = (
    "The language model did not produce a sourced answer, so this answer was assembled directly from the sources."
)
NOT_ANSWERED_NOTICE = (
    "The language model found no answer in the sources, so this answer was assembled directly from them."
)

_BLANKED = re.compile(r" {3,}")


def format_passages(passages: Sequence[Passage]) -> str:
    """The numbered passages as the model sees them: ``[n] (source type label, title) text``."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        chunk = passage.chunk
        label = source_type_label(chunk.source_type)
        source = f"{label}, {chunk.title}" if chunk.title else label
        text = _BLANKED.sub(" ", chunk.text.strip())  # where without_errata removed a sentence
        blocks.append(f"[{n}] ({source}) {text}")
    return "\n\n".join(blocks)


def format_conversation(history: Sequence[Message]) -> str:
    """The recent turns as the model sees them, oldest first ("(none)" for a first question)."""
    turns = [m for m in history if m.content.strip()][-CONVERSATION_TURNS:]
    if not turns:
        return "(none)"
    lines = []
    for m in turns:
        text = " ".join(m.content.split())
        text = text if len(text) <= _TURN_CHARS else text[: _TURN_CHARS - 1] + "…"
        lines.append(f"{'Reader' if m.role == 'user' else 'Assistant'}: {text}")
    return "\n".join(lines)


def without_errata(passages: Sequence[Passage], errata: Sequence[Erratum]) -> list[Passage]:
    """The passages with each sentence of a known source error (corpus/errata.yaml) blanked out.

    Blanked with spaces of the same length, so offsets still point into the document: the model never
    reads the error, the post-check never counts it as support, and no quote is taken from it.
    """
    out = []
    for passage in passages:
        chunk = passage.chunk
        text = chunk.text
        for start, end in sentence_spans(chunk.text):
            if in_errata(errata, chunk.doc_id, chunk.text[start:end]):
                text = text[:start] + " " * (end - start) + text[end:]
        out.append(
            passage
            if text == chunk.text
            else passage.model_copy(update={"chunk": chunk.model_copy(update={"text": text})})
        )
    return out


def _comparable(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass
class KeptSentence:
    """A generated sentence that survived the post-check, with its supported passage numbers (1-based)."""

    claim: str
    cited: list[int]


@dataclass
class CheckedAnswer:
    """What the post-check made of the generated text."""

    kept: list[KeptSentence] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    said_no_answer: bool = False


def check_sentences(text: str, passages: Sequence[Passage], support: SupportScorer, threshold: float) -> CheckedAnswer:
    """Keep the sentences whose in-range citations support them (dropping unsupported markers); count the rest."""
    checked = CheckedAnswer()
    publishers = {p.chunk.publisher for p in passages if p.chunk.publisher}
    for sentence in cited_sentences(text):
        claim = sentence.text
        if _comparable(claim) == _comparable(NO_ANSWER_SENTENCE):
            checked.said_no_answer = True
            continue
        named = {name for name in publishers if name.lower() in claim.lower()}
        supported = [
            n
            for n in sentence.cited
            if 1 <= n <= len(passages)
            # A claim that names a source must cite that source ("PsyPost reports ..." citing a clinic's blog).
            and (not named or passages[n - 1].chunk.publisher in named)
            and support.support(claim, passages[n - 1].chunk.text) >= threshold
        ]
        if supported:
            checked.kept.append(KeptSentence(claim=claim, cited=supported))
        else:
            checked.dropped.append(claim)
    return checked


def best_span(claims: Sequence[str], passage: Passage, support: SupportScorer) -> tuple[int, int]:
    """Offsets of the sentence of the passage that best supports any of the claims (earliest on ties)."""
    text = passage.chunk.text
    spans = list(sentence_spans(text)) or [(0, len(text))]
    best, best_score = spans[0], -1.0
    for start, end in spans:
        score = max(support.support(claim, text[start:end]) for claim in claims)
        if score > best_score:
            best, best_score = (start, end), score
    return best


def assemble(
    checked: CheckedAnswer, passages: Sequence[Passage], support: SupportScorer
) -> tuple[list[Statement], list[Citation]]:
    """Plain-language statements with citations numbered 1..m in order of first use, and one verbatim quote each."""
    order: list[int] = []
    claims_by_passage: dict[int, list[str]] = {}
    for sentence in checked.kept:
        for n in sentence.cited:
            if n not in claims_by_passage:
                order.append(n)
                claims_by_passage[n] = []
            claims_by_passage[n].append(sentence.claim)
    renumber = {old: new for new, old in enumerate(order, start=1)}
    statements = [
        Statement(kind="plain", text=sentence.claim, citation_ids=[renumber[n] for n in sentence.cited], lead=True)
        for sentence in checked.kept
    ]
    citations = []
    for old in order:
        passage = passages[old - 1]
        start, end = best_span(claims_by_passage[old], passage, support)
        citations.append(make_citation(renumber[old], passage, start, end))
    return statements, citations


def dropped_notice(count: int) -> str:
    """The notice telling the reader how many generated sentences were removed."""
    if count == 1:
        return "1 sentence that the sources did not support was removed from this answer."
    return f"{count} sentences that the sources did not support were removed from this answer."


class LLMAnswerer:
    """Answers with a chat model; falls back to another answerer when that fails."""

    name = "llm"

    def __init__(
        self,
        model: ChatModel,
        prompts_dir: Path,
        support: SupportScorer,
        fallback: Answerer,
        support_threshold: float,
        errata: Sequence[Erratum] = (),
        verifier: SupportScorer | None = None,
    ) -> None:
        self.model = model
        self.verifier = verifier
        self.errata = tuple(errata)
        self.prompts_dir = Path(prompts_dir)
        self.support = support
        self.fallback = fallback
        self.support_threshold = support_threshold
        # Read (and checked) now, not on the first question: a broken template should stop start-up.
        self._system_prompt = load_prompt(self.prompts_dir, SYSTEM_PROMPT)
        self._user_prompt = load_prompt(self.prompts_dir, USER_PROMPT, USER_PROMPT_VARIABLES)

    def answer(self, question: Question, passages: Sequence[Passage]) -> Answer:
        """A cited answer whose every sentence a cited passage supports, or the fallback's answer with a notice."""
        passages = list(passages)  # the fallback filters the errata itself
        if not passages:
            return self.fallback.answer(question, passages)
        shown = without_errata(passages, self.errata)
        try:
            generated = self.model.complete(self.messages(question, shown))
        except LLMUnavailableError as exc:
            log.warning("LLM answerer falling back: %s", exc)
            return self._fall_back(question, passages, UNAVAILABLE_NOTICE)
        checked = check_sentences(generated, shown, self.support, self.support_threshold)
        if self.verifier is not None:
            checked = self._verified(checked, shown)
        if checked.dropped:
            # Counts only: generated text repeats the reader's words, which never go to the log at INFO.
            log.info("post-check removed %d sentence(s)", len(checked.dropped))
        if not checked.kept:
            if checked.said_no_answer and not checked.dropped:
                fallback = self.fallback.answer(question, passages)
                if fallback.kind != "answer":
                    return fallback  # both agree the sources do not answer: nothing degraded to announce
                return fallback.model_copy(update={"notice": NOT_ANSWERED_NOTICE})
            return self._fall_back(question, passages, UNSOURCED_NOTICE)
        statements, citations = assemble(checked, shown, self.support)
        notice = dropped_notice(len(checked.dropped)) if checked.dropped else None
        return Answer(kind="answer", statements=statements, citations=citations, notice=notice, answerer=self.name)

    def _verified(self, checked: CheckedAnswer, passages: Sequence[Passage]) -> CheckedAnswer:
        """The kept sentences the optional verification call also finds supported by their cited passages."""
        assert self.verifier is not None
        out = CheckedAnswer(dropped=list(checked.dropped), said_no_answer=checked.said_no_answer)
        for sentence in checked.kept:
            evidence = " ".join(passages[n - 1].chunk.text for n in sentence.cited)
            try:
                verdict = self.verifier.support(sentence.claim, evidence)
            except LLMUnavailableError:
                verdict = 1.0  # the endpoint failed: the deterministic checks stand alone
            (out.kept.append(sentence) if verdict >= 0.5 else out.dropped.append(sentence.claim))
        return out

    def messages(self, question: Question, passages: Sequence[Passage]) -> list[ChatMessage]:
        """The messages sent to the model: the reader's own words and recent turns; passages as data."""
        user = self._user_prompt.format(
            passages=format_passages(passages),
            question=question.text,
            conversation=format_conversation(question.history),
        )
        return [ChatMessage(role="system", content=self._system_prompt), ChatMessage(role="user", content=user)]

    def _fall_back(self, question: Question, passages: Sequence[Passage], notice: str) -> Answer:
        return self.fallback.answer(question, passages).model_copy(update={"notice": notice})
