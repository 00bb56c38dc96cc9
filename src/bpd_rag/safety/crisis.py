"""Crisis detection: reviewed patterns plus similarity to exemplar crisis statements, with a margin
against exemplar research questions so that questions about suicidality studies are not crises."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bpd_rag.embeddings import Embedder
from bpd_rag.safety.rules import Rule
from bpd_rag.safety.text import Spelling, split_sentences
from bpd_rag.types import SafetyDecision

# A sentence (or the whole message) is a crisis when its best crisis exemplar scores at least FLOOR and
# beats the best research exemplar by MARGIN (cosine, packaged MiniLM model). Chosen on the table in
# tests/test_safety_table.py plus ~135 further crisis statements, look-alike questions and small talk
# written while tuning: the hardest look-alike scored a margin of +0.06 and most crisis statements +0.10
# or more; with the patterns in place any floor in 0.40-0.50 and margin in 0.06-0.12 gave the same
# results, and the middle is used. On its own the similarity rule finds about 3 in 4 crisis statements,
# the patterns about 2 in 3 of those they were not written for; together they miss few.
DEFAULT_FLOOR = 0.45
DEFAULT_MARGIN = 0.08

# How many words before a match are searched for a negation ("i would never kill myself").
_NEGATION_WINDOW = 3
# Shorter texts ("ok bye") land near some exemplar by chance; short crisis words are the patterns' job.
_MIN_WORDS = 3


@dataclass(frozen=True)
class Similarity:
    """How close a piece of text is to the nearest crisis and research exemplars."""

    text: str
    crisis: float
    research: float
    crisis_exemplar: str
    research_exemplar: str


class CrisisDetector:
    """Decides whether a message shows current risk; exemplar vectors are computed once, on first use."""

    def __init__(
        self,
        embedder: Embedder,
        spelling: Spelling,
        rules: Sequence[Rule],
        fragments: dict[str, re.Pattern[str]],
        crisis_exemplars: Sequence[str],
        research_exemplars: Sequence[str],
        floor: float = DEFAULT_FLOOR,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.embedder = embedder
        self.spelling = spelling
        self.rules = list(rules)
        self.first = fragments["FIRST"]
        self.third = fragments["THIRD"]
        self.generic = fragments["GENERIC"]
        self.negation = fragments["NEGATION"]
        self.crisis_exemplars = list(crisis_exemplars)
        self.research_exemplars = list(research_exemplars)
        self.floor = floor
        self.margin = margin
        self._lock = threading.Lock()
        self._exemplar_vectors: tuple[np.ndarray, np.ndarray] | None = None

    def assess(self, message: str) -> SafetyDecision:
        """A crisis decision (with the rule or the similarity that decided it), or the default: answer."""
        sentences = [self.spelling.normalise(s) for s in split_sentences(message)]
        sentences = [s for s in sentences if s]
        for sentence in sentences:
            rule = self.match(sentence)
            if rule is not None:
                return SafetyDecision(
                    action="crisis", risk="crisis", category=rule.category, reason=f"pattern {rule.id}"
                )
        for sim in self.similarities(sentences):
            if self.is_crisis(sim):
                return SafetyDecision(
                    action="crisis",
                    risk="crisis",
                    category="similarity",
                    reason=(
                        f"similarity {sim.crisis:.2f} to {sim.crisis_exemplar!r}, "
                        f"{sim.research:.2f} to {sim.research_exemplar!r}"
                    ),
                )
        return SafetyDecision()

    def is_crisis(self, sim: Similarity) -> bool:
        """The similarity rule: close to a crisis statement, and clearly closer than to any research question."""
        return sim.crisis >= self.floor and sim.crisis - sim.research >= self.margin

    def match(self, sentence: str) -> Rule | None:
        """The first crisis pattern that matches a normalised sentence in its scope."""
        for rule in self.rules:
            for found in rule.regex.finditer(sentence):
                if self._in_scope(rule, sentence, found):
                    return rule
        return None

    def _in_scope(self, rule: Rule, sentence: str, found: re.Match[str]) -> bool:
        if rule.scope == "any":
            return True
        before = " ".join(sentence[: found.start()].split()[-_NEGATION_WINDOW:])
        if self.negation.search(before):
            return False
        if rule.scope == "third":
            return bool(self.third.search(sentence))
        # personal: about the writer, or at least not a question about people in general
        return bool(self.first.search(sentence)) or not self.generic.search(sentence)

    def similarities(self, sentences: Sequence[str]) -> list[Similarity]:
        """Similarity of each sentence, and of the whole message when it has several."""
        units = [s for s in sentences if len(s.split()) >= _MIN_WORDS]
        if len(sentences) > 1:
            units.append(" ".join(sentences))
        if not units:
            return []
        crisis_vectors, research_vectors = self._exemplars()
        vectors = np.asarray(self.embedder.embed_documents(units), dtype=np.float32)
        crisis = vectors @ crisis_vectors.T
        research = vectors @ research_vectors.T
        out = []
        for i, text in enumerate(units):
            c, r = int(crisis[i].argmax()), int(research[i].argmax())
            out.append(
                Similarity(
                    text,
                    float(crisis[i, c]),
                    float(research[i, r]),
                    self.crisis_exemplars[c],
                    self.research_exemplars[r],
                )
            )
        return out

    def prepare(self) -> None:
        """Embed the exemplars now rather than on first use (a server does this at startup)."""
        self._exemplars()

    def _exemplars(self) -> tuple[np.ndarray, np.ndarray]:
        # Embedded once per detector, on first use or prepare(): building a pipeline stays cheap.
        with self._lock:
            if self._exemplar_vectors is None:
                texts = [self.spelling.normalise(t) for t in self.crisis_exemplars + self.research_exemplars]
                vectors = np.asarray(self.embedder.embed_documents(texts), dtype=np.float32)
                n = len(self.crisis_exemplars)
                self._exemplar_vectors = (vectors[:n], vectors[n:])
            return self._exemplar_vectors
