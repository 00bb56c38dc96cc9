"""How well a passage supports a claim: a deterministic score from the packaged embedder and term overlap."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import yaml

from bpd_rag.embeddings import Embedder, cosine
from bpd_rag.fitted import packaged
from bpd_rag.textutil import split_sentences, terms

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class SupportScorer(Protocol):
    """Scores in [0, 1] how far ``evidence`` supports ``claim``."""

    def support(self, claim: str, evidence: str) -> float: ...


def numbers_unsupported(claim: str, evidence: str) -> set[str]:
    """Numbers stated in the claim that the evidence never states (the commonest made-up detail)."""
    return set(_NUMBER.findall(claim)) - set(_NUMBER.findall(evidence))


def term_recall(claim: str, evidence: str) -> float:
    """Share of the claim's content terms that the evidence contains."""
    claim_terms = set(terms(claim))
    if not claim_terms:
        return 0.0
    return len(claim_terms & set(terms(evidence))) / len(claim_terms)


class EmbeddingLexicalSupport:
    """Mean of embedding similarity and content-term recall; zero when the claim adds numbers."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def support(self, claim: str, evidence: str) -> float:
        if numbers_unsupported(claim, evidence):
            return 0.0
        claim_vec, evidence_vec = self.embedder.embed_documents([claim, evidence])
        return 0.5 * max(cosine(claim_vec, evidence_vec), 0.0) + 0.5 * term_recall(claim, evidence)


class Contradictions:
    """Explicit rules for a claim that says the opposite of its evidence (data/answering/contradictions.yaml)."""

    def __init__(self, negations: re.Pattern[str], universal: re.Pattern[str], antonyms: list[tuple[str, str]]) -> None:
        self.negations = negations
        self.universal = universal
        self.antonyms = antonyms

    @classmethod
    def load(cls, path: Path | None = None) -> Contradictions:
        path = path or packaged("answering", "contradictions.yaml")
        data = yaml.safe_load(path.read_text("utf-8"))
        return cls(
            re.compile(data["negations"], re.I),
            re.compile(data["universal"], re.I),
            [(str(a).lower(), str(b).lower()) for a, b in data["antonyms"]],
        )

    def why(self, claim: str, evidence: str) -> str | None:
        """Why the claim contradicts the evidence sentence most like it, or None."""
        sentence = _closest_sentence(claim, evidence)
        claim_words, sentence_words = set(_words(claim)), set(_words(sentence))
        if bool(self.negations.search(claim)) != bool(self.negations.search(sentence)):
            return "negation"
        added = {m.group(0).lower() for m in self.universal.finditer(claim)} - {
            m.group(0).lower() for m in self.universal.finditer(sentence)
        }
        if added:
            return f"quantifier {sorted(added)[0]!r}"
        for a, b in self.antonyms:
            for mine, theirs in ((a, b), (b, a)):
                if mine in claim_words and theirs in sentence_words and mine not in sentence_words:
                    return f"{mine!r} where the source says {theirs!r}"
        return None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9-]*", text.lower())


def _closest_sentence(claim: str, evidence: str) -> str:
    """The sentence of the evidence that shares the most content terms with the claim."""
    claim_terms = set(terms(claim))
    sentences = split_sentences(evidence) or [evidence]
    return max(sentences, key=lambda s: len(claim_terms & set(terms(s))))


class CheckedSupport:
    """A support scorer that also refuses a claim its evidence contradicts (support 0 then)."""

    def __init__(self, scorer: SupportScorer, contradictions: Contradictions) -> None:
        self.scorer = scorer
        self.contradictions = contradictions

    def support(self, claim: str, evidence: str) -> float:
        if self.contradictions.why(claim, evidence) is not None:
            return 0.0
        return self.scorer.support(claim, evidence)
