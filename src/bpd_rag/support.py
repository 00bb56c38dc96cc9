"""How well a passage supports a claim: a deterministic score from the packaged embedder and term overlap."""

from __future__ import annotations

import re
from typing import Protocol

from bpd_rag.embeddings import Embedder, cosine
from bpd_rag.textutil import terms

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
