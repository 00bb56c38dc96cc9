"""Question (+ history) -> ranked Passages: dense and BM25 rankings fused by reciprocal rank."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import IndexMissingError
from bpd_rag.index import embedding_text
from bpd_rag.store import Manifest, VectorStore
from bpd_rag.textutil import one_edit, terms, words
from bpd_rag.types import Chunk, Message, Passage

if TYPE_CHECKING:
    from bpd_rag.settings import RetrievalSettings

_ANAPHORA = frozenset(
    ["it", "its", "that", "this", "these", "those", "they", "them", "their", "there", "he", "she", "his", "her", "such"]
)
_MANIFEST_RECHECK_S = 5.0


def resolve_query(question: str, history: Sequence[Message] = ()) -> str:
    """A standalone query: a follow-up ("what dose was used for that?") borrows the previous user turn."""
    previous = [m.content for m in history if m.role == "user" and m.content.strip()]
    if not previous:
        return question
    question_words = set(words(question))
    content = terms(question)
    if (
        question_words & _ANAPHORA
        or len(content) < 3
        or re.match(r"^\s*(and|what about|how about|also)\b", question, re.I)
    ):
        return f"{previous[-1]} {question}"
    return question


class BM25Index:
    """Okapi BM25 over an inverted index (sparse: a query touches only chunks sharing its terms)."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.n = len(documents)
        lengths = np.array([len(d) for d in documents], dtype=np.int64)
        self.avg_len = float(lengths.mean()) if self.n else 0.0
        norm = k1 * (1 - b + b * lengths / (self.avg_len or 1.0))
        # Term frequencies counted by numpy over (term, document) pairs: a dict per term holding a Python int
        # per occurrence took ~6 KB per chunk and seconds to build at 100k chunks (bench/scale.py).
        vocabulary: dict[str, int] = {}
        term_ids = np.fromiter(
            (vocabulary.setdefault(term, len(vocabulary)) for doc in documents for term in doc),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        doc_ids = np.repeat(np.arange(self.n, dtype=np.int64), lengths)
        pairs, counts = np.unique(term_ids * max(self.n, 1) + doc_ids, return_counts=True)  # by term, then doc
        del term_ids, doc_ids
        pair_terms = pairs // max(self.n, 1)
        pair_docs = pairs % max(self.n, 1)
        bounds = np.searchsorted(pair_terms, np.arange(len(vocabulary) + 1))
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, term_id in vocabulary.items():
            lo, hi = int(bounds[term_id]), int(bounds[term_id + 1])
            ids = pair_docs[lo:hi].copy()
            tf = counts[lo:hi].astype(np.float64)
            idf = np.log(1 + (self.n - (hi - lo) + 0.5) / ((hi - lo) + 0.5))
            self._postings[term] = (ids, idf * tf * (k1 + 1) / (tf + norm[ids]))

    def __contains__(self, term: object) -> bool:
        return term in self._postings

    def top(self, query_terms: Sequence[str], n: int) -> list[tuple[int, float]]:
        """Best n (document index, score) pairs with a positive score."""
        # Scores are summed term by term in the same order as a Python loop would, so they are equal to the
        # last bit; numpy does the adding (a loop over the posting lists took 75 ms at 100k chunks).
        scores = np.zeros(self.n, dtype=np.float64)
        for term in set(query_terms):
            posting = self._postings.get(term)
            if posting is not None:
                scores[posting[0]] += posting[1]
        hits = np.flatnonzero(scores)  # every weight is positive: a touched document scores above zero
        if n <= 0 or not len(hits):
            return []
        if len(hits) > n:
            # Keep everything tied with the n-th best, then order exactly: score descending, index ascending.
            nth_best = -np.partition(-scores[hits], n - 1)[n - 1]
            hits = hits[scores[hits] >= nth_best]
        order = np.lexsort((hits, -scores[hits]))[:n]
        return [(int(i), float(scores[i])) for i in hits[order]]


_CORRECTED_LIMIT = 4096
_MIN_CORRECTABLE = 5  # shorter words have too many one-edit neighbours ("cost" -> "most")


class Speller:
    """Corrects a misspelled query word to the most frequent corpus word one edit away ("ketamin" -> "ketamine").

    Real English words are left alone even when the corpus does not use them ("right" is not "might").
    """

    def __init__(self, vocabulary: Counter[str], english: frozenset[str] = frozenset()) -> None:
        self.vocabulary = vocabulary
        self.english = english
        # Corrected texts: Pipeline.ask corrects each message twice (the crisis check's guess of the query,
        # then the query itself), and the same questions come back.
        self._corrected: dict[str, str] = {}

    def correct_word(self, word: str) -> str:
        lower = word.lower()
        if len(lower) < _MIN_CORRECTABLE or not lower.isalpha() or lower in self.vocabulary:
            return word
        known = [w for w in one_edit(lower) if w in self.vocabulary]
        if not known:
            return word
        best = max(known, key=lambda w: (self.vocabulary[w], w))
        # A real English word may be a typo too ("pilot trail") or just what it says ("right"): keep it and
        # add the corpus word beside it, so the query loses nothing either way. Exact dictionary words only:
        # inflection rules would also accept typos ("studdy" as a form of "stud").
        return f"{word} {best}" if lower in self.english else best

    def correct(self, text: str) -> str:
        """The text with each unknown word replaced by its correction, everything else untouched."""
        corrected = self._corrected.get(text)
        if corrected is None:
            corrected = re.sub(r"[A-Za-z]+", lambda m: self.correct_word(m.group()), text)
            if len(self._corrected) >= _CORRECTED_LIMIT:
                self._corrected = {}  # replaced, not cleared in place: requests run in threads
            self._corrected[text] = corrected
        return corrected


@dataclass
class _Snapshot:
    manifest_json: str
    chunks: list[Chunk]
    by_id: dict[str, int]
    position: dict[tuple[str, int], int]  # (doc id, chunk index) -> index in chunks
    bm25: BM25Index
    speller: Speller


class Retriever:
    """Hybrid retrieval over the live chunks of a store."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        english_words: frozenset[str] = frozenset(),
    ) -> None:
        self.english_words = english_words
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self._snapshot: _Snapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def _load(self, manifest: Manifest) -> _Snapshot:
        chunks = [c for c in self.store.all_chunks() if manifest.is_live(c)]
        chunks.sort(key=lambda c: (c.doc_id, c.index))
        texts = [embedding_text(c) for c in chunks]
        return _Snapshot(
            manifest_json=manifest.to_json(),
            chunks=chunks,
            by_id={c.chunk_id: i for i, c in enumerate(chunks)},
            position={(c.doc_id, c.index): i for i, c in enumerate(chunks)},
            bm25=BM25Index([terms(t) for t in texts]),
            speller=Speller(Counter(w for t in texts for w in words(t)), self.english_words),
        )

    def snapshot(self) -> _Snapshot:
        """The chunks and BM25 index of the live manifest, reloaded when an ingest swapped it."""
        with self._lock:
            now = time.monotonic()
            if self._snapshot is not None and now - self._checked_at < _MANIFEST_RECHECK_S:
                return self._snapshot
            manifest = self.store.read_manifest()
            if manifest is None or not manifest.docs:
                raise IndexMissingError(f"The index at {self.store.location} is empty. Build it with: bpd-rag ingest")
            if manifest.embedder != self.embedder.name:
                raise IndexMissingError(
                    f"The index was built with {manifest.embedder} but the settings use {self.embedder.name}. "
                    "Rebuild it with: bpd-rag ingest"
                )
            if self._snapshot is None or self._snapshot.manifest_json != manifest.to_json():
                self._snapshot = self._load(manifest)
            self._checked_at = now
            return self._snapshot

    def loaded_speller(self) -> Speller | None:
        """The speller of the index in memory, without checking the store for a newer one."""
        snapshot = self._snapshot
        return snapshot.speller if snapshot is not None else None

    def knows_term(self, term: str) -> bool:
        """Whether a (stemmed) term occurs anywhere in the indexed corpus."""
        return term in self.snapshot().bm25

    def with_neighbours(self, passages: list[Passage]) -> list[Passage]:
        """The passages, each followed by the next chunk of its document when not already present.

        A chunk often continues the one before without naming its subject ("In this study, 22 adults ...");
        the ranking finds the chunk that names it, the answer is in the next one.
        """
        snap = self.snapshot()
        position = snap.position  # built once per index load, not per question (O(chunks) each time)
        have = {p.chunk.chunk_id for p in passages}
        out: list[Passage] = []
        for passage in passages:
            out.append(passage)
            following = position.get((passage.chunk.doc_id, passage.chunk.index + 1))
            if following is not None and snap.chunks[following].chunk_id not in have:
                have.add(snap.chunks[following].chunk_id)
                out.append(
                    Passage(
                        chunk=snap.chunks[following], score=passage.score * 0.5, neighbour_of=passage.chunk.chunk_id
                    )
                )
        return out

    def correct_spelling(self, query: str) -> str:
        """The query with misspelled words corrected against the corpus vocabulary."""
        return self.snapshot().speller.correct(query)

    def retrieve(self, query: str, k: int | None = None) -> list[Passage]:
        """The k best passages for the query, by weighted reciprocal rank fusion of dense and BM25."""
        snap = self.snapshot()
        k = k or self.settings.top_k
        n = self.settings.candidates
        vector = self.embedder.embed_query(query)
        # Ask for extra hits: chunks of an unfinished ingest are in the store but not live.
        dense = [(cid, sim) for cid, sim in self.store.query(vector, n * 2) if cid in snap.by_id][:n]
        sparse = snap.bm25.top(terms(query), n)

        fused: dict[int, float] = {}
        dense_rank: dict[int, int] = {}
        dense_sim: dict[int, float] = {}
        bm25_rank: dict[int, int] = {}
        rrf_k = self.settings.rrf_k
        for rank, (cid, sim) in enumerate(dense, start=1):
            i = snap.by_id[cid]
            dense_rank[i], dense_sim[i] = rank, sim
            fused[i] = fused.get(i, 0.0) + self.settings.dense_weight / (rrf_k + rank)
        for rank, (i, _score) in enumerate(sparse, start=1):
            bm25_rank[i] = rank
            fused[i] = fused.get(i, 0.0) + self.settings.bm25_weight / (rrf_k + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [
            Passage(
                chunk=snap.chunks[i],
                score=score,
                dense_rank=dense_rank.get(i),
                bm25_rank=bm25_rank.get(i),
                dense_similarity=dense_sim.get(i),
            )
            for i, score in best
        ]
