"""The LLM answer check catches claims that contradict their citation: a mutation suite over the corpus's own
sentences (negated, numbers changed, quantifiers made universal, antonyms swapped, sources swapped), each
given to the post-check as a generated sentence citing the passage it came from."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest

from bpd_rag.answering.llm import check_sentences
from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.support import CheckedSupport, Contradictions, EmbeddingLexicalSupport
from bpd_rag.textutil import split_sentences
from bpd_rag.types import Chunk, Passage
from tests.conftest import CORPUS

pytestmark = pytest.mark.real_model
THRESHOLD = 0.55  # the setting's default (answer.support_threshold)
SOURCES = ("pip-pilot-rct-blog", "expio-pilot-rct-summary", "psypost-trd-bpd-2023")
OTHER_SOURCE = {
    "pip-pilot-rct-blog": "PsyPost",
    "expio-pilot-rct-summary": "PsyPost",
    "psypost-trd-bpd-2023": "Expio Center",
}
_AUX = re.compile(r"\b(was|were|is|are|did|does|can|may|had|has|have)\b")
_NEG = re.compile(r"\b(not|no|never) ")
_QUANT = re.compile(r"\b(some|many|most|several|both|half)\b", re.I)
_NUM = re.compile(r"\b\d+(?:\.\d+)?\b")


def negate(s: str) -> str | None:
    if _NEG.search(s):
        return _NEG.sub("", s, count=1)
    return _AUX.sub(lambda m: f"{m.group(1)} not", s, count=1) if _AUX.search(s) else None


def swap_number(s: str) -> str | None:
    return _NUM.sub(lambda m: str(int(float(m.group(0))) + 7), s, count=1) if _NUM.search(s) else None


def universal(s: str) -> str | None:
    return _QUANT.sub("all", s, count=1) if _QUANT.search(s) else None


def antonym(s: str, rules: Contradictions) -> str | None:
    for a, b in rules.antonyms:
        for word, opposite in ((a, b), (b, a)):
            if re.search(rf"\b{re.escape(word)}\b", s) and not word.isdigit():
                return re.sub(rf"\b{re.escape(word)}\b", opposite, s, count=1)
    return None


def sentences() -> list[tuple[str, str, str]]:
    """(document id, passage, sentence) for the sentences of the study reports that state something."""
    out = []
    for document in load_corpus(CORPUS).documents:
        if document.doc_id not in SOURCES:
            continue
        for paragraph in document.text.split("\n\n"):
            for sentence in split_sentences(paragraph):
                if len(sentence.split()) >= 8 and not sentence.startswith("#"):
                    out.append((document.doc_id, paragraph, sentence))
    return out


@pytest.fixture(scope="module")
def scorer(real_embedder: SentenceTransformerEmbedder) -> CheckedSupport:
    return CheckedSupport(EmbeddingLexicalSupport(real_embedder), Contradictions.load())


def _kept(scorer: CheckedSupport, doc_id: str, passage: str, claim: str) -> bool:
    publisher = {"pip-pilot-rct-blog": "Philadelphia Integrative Psychiatry", "expio-pilot-rct-summary": "Expio Center"}
    chunk = Chunk(
        chunk_id="c",
        doc_id=doc_id,
        index=0,
        text=passage,
        start=0,
        end=len(passage),
        publisher=publisher.get(doc_id, "PsyPost"),
    )
    others = [
        Passage(chunk=Chunk(chunk_id=n, doc_id=n, index=0, text="Other text.", start=0, end=11, publisher=n), score=1)
        for n in ("PsyPost", "Expio Center", "Philadelphia Integrative Psychiatry")
        if n != chunk.publisher
    ]
    checked = check_sentences(f"{claim} [1]", [Passage(chunk=chunk, score=1.0), *others], scorer, THRESHOLD)
    return bool(checked.kept)


def test_mutations_of_the_sources_own_sentences_are_caught(scorer: CheckedSupport) -> None:
    rules = scorer.contradictions
    mutations: dict[str, Callable[[str], str | None]] = {
        "negated": negate,
        "number changed": swap_number,
        "quantifier made universal": universal,
        "antonym": lambda s: antonym(s, rules),
    }
    caught: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    originals_kept = 0
    rows = sentences()
    for doc_id, passage, sentence in rows:
        originals_kept += _kept(scorer, doc_id, passage, sentence)
        for name, mutate in mutations.items():
            mutated = mutate(sentence)
            if mutated is None or mutated == sentence:
                continue
            tried[name] += 1
            caught[name] += not _kept(scorer, doc_id, passage, mutated)
        tried["source swapped"] += 1
        caught["source swapped"] += not _kept(
            scorer, doc_id, passage, f"{OTHER_SOURCE[doc_id]} reports that {sentence}"
        )
    shares = {name: caught[name] / tried[name] for name in tried}
    print(f"\nmutation suite: {dict(tried)} tried; caught {shares}; originals kept {originals_kept}/{len(rows)}")
    assert originals_kept / len(rows) >= 0.9  # the checks do not throw away what the sources say
    assert sum(caught.values()) / sum(tried.values()) >= 0.9
    assert all(share >= 0.8 for share in shares.values()), shares


def test_the_examples_from_the_issue_are_caught(scorer: CheckedSupport) -> None:
    cure = "Ketamine isn’t a cure—but it may one day serve as a bridge to deeper healing."
    assert not _kept(scorer, "pip-pilot-rct-blog", cure, "Ketamine cures BPD in every patient")
    events = "No serious adverse events were reported."
    assert not _kept(scorer, "pip-pilot-rct-blog", events, "Serious adverse events were reported")
    assert _kept(scorer, "pip-pilot-rct-blog", events, "No serious adverse events were reported")
