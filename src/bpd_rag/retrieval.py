"""Question (+ history) -> ranked Passages: dense and BM25 rankings fused by reciprocal rank."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import (
    BpdRagError,
    ConfigurationError,
    IndexCorruptError,
    IndexMissingError,
    StoreUnavailableError,
)
from bpd_rag.index import embedding_text
from bpd_rag.store import LiveStore, VectorStore
from bpd_rag.textutil import one_edit, split_sentences, terms, words
from bpd_rag.types import Chunk, Message, Passage

if TYPE_CHECKING:
    from bpd_rag.settings import RetrievalSettings

_ANAPHORA = frozenset(
    ["it", "its", "that", "this", "these", "those", "they", "them", "their", "there", "he", "she", "his", "her", "such"]
)
# Words that point at the bot's last reply without a pronoun: "the first one you listed", "the other one", "what
# you said about the dose".
_POINTS_BACK = re.compile(
    r"\b(?:you|u) (?:just )?(?:said|say|mentioned|mention|listed|list|wrote|named|quoted|described|meant|mean)\b|"
    r"\bthe (?:first|second|third|fourth|last|other|second to last|same) "
    r"(?:one|ones|thing|study|article|source|group)\b",
    re.I,
)
# What a first message may name for "it" to refer to; without one of these, "it" is the chat's subject, ketamine.
_SUBJECTS = frozenset(
    [
        "ketamine",
        "ketamin",
        "esketamine",
        "spravato",
        "bpd",
        "borderline",
        "disorder",
        "therapy",
        "therapies",
        "dbt",
        "cbt",
        "treatment",
        "treatments",
        "trial",
        "trials",
        "study",
        "studies",
        "research",
        "midazolam",
        "placebo",
        "depression",
        "infusion",
        "infusions",
        "drug",
        "medication",
        "medicine",
        "dissociation",
        "diagnosis",
        "clinic",
        "blog",
        "article",
    ]
)
# Used when the store does not say (a LiveStore carries StoreSettings.reload_interval_s).
_RELOAD_INTERVAL_S = 2.0
# A request that took the old snapshot just before a swap may still be querying its store.
_RETIRED_GRACE_S = 30.0
# An index version that failed to load (wrong embedder, empty, a read that failed) is tried again after this,
# not on every look: the next ingest changes the version and is loaded at once.
_RETRY_FAILED_S = 30.0

log = logging.getLogger(__name__)


# A citation marker: the sentences of the bot's answers that carry one say something from the sources.
_MARKER = re.compile(r"\s*\[\d+\]")
# Markers at the start of a split sentence: they belong to the sentence before it.
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d+\])+")
# How much of the bot's last answer a follow-up borrows.
_ANSWER_WORDS = 30
# An answer's opening before its first quote or statement: a short label ("Note: ", "Here is what the sources
# say: ") or a quote's source ("Small randomized trial — Philadelphia Integrative Psychiatry (clinic blog): "). A
# longer clause before a colon is the answer itself ("It is too early to say whether ketamine works for BPD: the
# research is early"), and a source's name in a follow-up's query drew it to the card on that source.
_OPENING = re.compile(r"^(?:[^\[]{0,160}? — [^\[]{0,160}?\([a-z' ]{3,30}\)|(?:[^\s:\[]+\s+){0,5}[^\s:\[]+):\s+")


def answer_lead(history: Sequence[Message]) -> str:
    """The first sentence with a citation marker of the bot's last answer, without its markers ("" when the last
    turn is not an answer of the bot's, or says nothing from the sources: a crisis reply, "could not find")."""
    if not history or history[-1].role != "assistant":
        return ""
    for line in history[-1].content.splitlines():
        sentences = split_sentences(line.lstrip("-• "))
        for n, sentence in enumerate(sentences):
            # The bot's markers follow the full stop ("... in a clinic. [1] These are ..."), so the splitter hands
            # a sentence's markers to the next one: a sentence is cited when it carries a marker after its start,
            # or the next one starts with one.
            own = _LEADING_MARKERS.sub("", sentence)
            following = sentences[n + 1] if n + 1 < len(sentences) else ""
            if own.strip() and (_MARKER.search(own) or _LEADING_MARKERS.match(following)):
                return " ".join(_MARKER.sub("", _OPENING.sub("", own)).split()[:_ANSWER_WORDS])
    return ""


def resolve_query(question: str, history: Sequence[Message] = ()) -> str:
    """A standalone query: a follow-up ("what dose was used for that?") borrows the previous user turn and the
    lead of the bot's answer to it ("which one is stronger" after "two forms, S-ketamine and R-ketamine")."""
    previous = [m.content for m in history if m.role == "user" and m.content.strip()]
    if not previous:
        # A first message that says "it" and names nothing the sources are about ("is it safe", "how long does
        # it last") asks about the chat's subject, ketamine therapy: "it" is read as ketamine.
        if re.search(r"\bit\b", question, re.I) and not set(words(question)) & _SUBJECTS:
            return re.sub(r"\bit\b", "ketamine", question, count=1, flags=re.I)
        return question
    question_words = set(words(question))
    content = terms(question)
    if (
        question_words & _ANAPHORA
        or len(content) < 3
        or re.match(r"^\s*(and|what about|how about|also)\b", question, re.I)
        or _POINTS_BACK.search(question)
    ):
        return " ".join(p for p in (previous[-1], answer_lead(history), question) if p)
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

    def __init__(
        self,
        vocabulary: Counter[str],
        english: frozenset[str] = frozenset(),
        shorthand: Mapping[str, str] | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.english = english
        # Reviewed replacements of whole words (data/answering/shorthand.yaml): chat shorthand and short typos
        # the one-edit correction cannot reach ("ppl", "givn"), and real words typed for ours ("trail").
        self.shorthand = dict(shorthand or {})
        # Corrected texts: Pipeline.ask corrects each message twice (the crisis check's guess of the query,
        # then the query itself), and the same questions come back.
        self._corrected: dict[str, str] = {}

    def correct_word(self, word: str) -> str:
        lower = word.lower()
        if lower in self.shorthand:
            return self.shorthand[lower]
        if len(lower) < _MIN_CORRECTABLE or not lower.isalpha() or lower in self.vocabulary:
            return word
        # A word the corpus has with an ending added is an inflection, not a typo ("dissociate" is not
        # "dissociated", "relapse" is not "relapses").
        known = [w for w in one_edit(lower) if w in self.vocabulary and w not in (lower + "d", lower + "s")]
        if not known:
            return word
        # A real English word stays what it says ("right" is not "might", "hooked" is not "looked"): the speller
        # corrects, it never adds words to the query. Exact dictionary words only: inflection rules would also
        # accept typos ("studdy" as a form of "stud").
        if lower in self.english:
            return word
        return max(known, key=lambda w: (self.vocabulary[w], w))

    def correct(self, text: str) -> str:
        """The text with each unknown word replaced by its correction, everything else untouched."""
        corrected = self._corrected.get(text)
        if corrected is None:
            corrected = re.sub(r"[A-Za-z0-9]+", lambda m: self.correct_word(m.group()), text)
            if len(self._corrected) >= _CORRECTED_LIMIT:
                self._corrected = {}  # replaced, not cleared in place: requests run in threads
            self._corrected[text] = corrected
        return corrected


@dataclass(frozen=True)
class _Snapshot:
    version: str  # the store's version() when this was loaded: a different one means another ingest
    store: VectorStore  # what was read: its queries answer with the chunks below
    manifest_json: str
    doc_ids: frozenset[str]  # the live documents
    chunks: list[Chunk]
    by_id: dict[str, int]
    position: dict[tuple[str, int], int]  # (doc id, chunk index) -> index in chunks
    bm25: BM25Index
    speller: Speller


class Retriever:
    """Hybrid retrieval over the live chunks of a store.

    The index is held as a snapshot (chunks, BM25, the store they were read from). A watcher thread looks at
    the store's version every reload_interval_s; when another process's ingest changed it, the new snapshot is
    loaded on that thread and swapped in with one assignment. A request takes whichever snapshot is in place,
    so it never waits for a reload and never mixes two indexes.
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        english_words: frozenset[str] = frozenset(),
        shorthand: Mapping[str, str] | None = None,
        question_texts: Sequence[str] = (),
    ) -> None:
        self.english_words = english_words
        self.shorthand = dict(shorthand or {})
        # The reviewed questions and phrasings of the answer cards: the speller corrects toward their words as
        # well as the index's ("invnted" is "invented", a word only a card's question uses).
        self.question_words = Counter(w for t in question_texts for w in words(t))
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reload_interval_s = store.reload_interval_s if isinstance(store, LiveStore) else _RELOAD_INTERVAL_S
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()  # one load at a time; a request holding a snapshot never takes it
        self._failed: tuple[float, str | None, BpdRagError] | None = None  # (when, store version, error): last load
        self._unreachable: BpdRagError | None = None  # the store stopped answering requests; cleared by the watcher
        self._retired: list[tuple[float, VectorStore]] = []  # stores of replaced snapshots, closed after a grace
        self._problem = ""  # the last problem the watcher logged (each is logged once)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def snapshot(self) -> _Snapshot:
        """The chunks and BM25 index of the live manifest (loaded here only when none is loaded yet)."""
        self._watch()
        snapshot = self._snapshot or self._load_first()
        unreachable = self._unreachable
        if unreachable is not None:  # fail at once rather than make every request wait for the store's timeout
            raise _again(unreachable)
        return snapshot

    def _load_first(self) -> _Snapshot:
        with self._lock:
            if self._snapshot is not None:
                return self._snapshot
            failed = self._failed
            if failed is not None and time.monotonic() - failed[0] < self.reload_interval_s:
                raise _again(failed[2])  # a store that just failed is not asked again by every request
            self._reload(retry_failed=True)  # loads a snapshot or raises why it cannot
            snapshot = self._snapshot
            assert snapshot is not None
            return snapshot

    def refresh(self) -> None:
        """Load the index anew if another process changed it (the watcher thread calls this; it never raises)."""
        try:
            with self._lock:
                self._reload(retry_failed=False)
                self._close_retired(time.monotonic() - _RETIRED_GRACE_S)
        except BpdRagError as exc:
            if str(exc) != self._problem:
                log.warning("keeping the loaded index: %s", exc)
                self._problem = str(exc)
        except Exception:
            log.exception("the index watcher failed; it keeps watching")
        else:
            self._problem = ""

    def _reload(self, retry_failed: bool) -> None:
        """Swap in a snapshot of the store as it is now, unless the loaded one is still current (lock held)."""
        current = self._snapshot
        try:
            with self._store_errors(self.store, request=False):
                version = self.store.version() if isinstance(self.store, LiveStore) else _manifest_version(self.store)
        except BpdRagError as exc:
            self._failed = (time.monotonic(), None, exc)
            raise
        self._unreachable = None  # the store answered
        if current is not None and current.version == version:
            return
        failed = self._failed
        if (
            not retry_failed
            and failed is not None
            and failed[1] == version
            and time.monotonic() - failed[0] < _RETRY_FAILED_S
        ):
            return  # this version could not be loaded just now (the error was logged); an ingest changes it
        try:
            with self._store_errors(self.store, request=False):
                fresh = self.store.reopened() if isinstance(self.store, LiveStore) else self.store
            try:
                snapshot = self._load(fresh, version)
            except BaseException:
                if fresh is not self.store:
                    _close(fresh)
                raise
        except BpdRagError as exc:
            self._failed = (time.monotonic(), version, exc)
            raise
        self._snapshot = snapshot  # the swap: requests from now on use the new index
        self._failed = None
        if current is not None:
            log.info("index reloaded: %d live chunks of %d documents", len(snapshot.chunks), len(snapshot.doc_ids))
            if current.store is not snapshot.store and current.store is not self.store:
                self._retired.append((time.monotonic(), current.store))

    def _load(self, store: VectorStore, version: str) -> _Snapshot:
        with self._store_errors(store, request=False):
            manifest = store.read_manifest()
            if manifest is None or not manifest.docs:
                raise IndexMissingError(f"The index at {self.store.location} is empty. Build it with: bpd-rag ingest")
            if manifest.embedder != self.embedder.name:
                raise IndexMissingError(
                    f"The index was built with {manifest.embedder} but the settings use {self.embedder.name}. "
                    "Rebuild it with: bpd-rag ingest"
                )
            chunks = [c for c in store.all_chunks() if manifest.is_live(c)]
            # Chroma reads its vector index from disk on the first query: that one is asked here, on the
            # loading thread, not by the first reader after the swap.
            store.query([1.0] + [0.0] * (self.embedder.dimension - 1), 1)
        chunks.sort(key=lambda c: (c.doc_id, c.index))
        texts = [embedding_text(c) for c in chunks]
        return _Snapshot(
            version=version,
            store=store,
            manifest_json=manifest.to_json(),
            doc_ids=frozenset(manifest.docs),
            chunks=chunks,
            by_id={c.chunk_id: i for i, c in enumerate(chunks)},
            position={(c.doc_id, c.index): i for i, c in enumerate(chunks)},
            bm25=BM25Index([terms(t) for t in texts]),
            speller=Speller(
                Counter(w for t in texts for w in words(t)) + self.question_words, self.english_words, self.shorthand
            ),
        )

    @contextlib.contextmanager
    def _store_errors(self, store: VectorStore, request: bool) -> Iterator[None]:
        """Any store failure as a BpdRagError (the API answers 503 with its message)."""
        try:
            yield
        except StoreUnavailableError as exc:
            if request:
                self._unreachable = exc
            raise
        except BpdRagError:
            raise
        except Exception as exc:
            error = StoreUnavailableError(
                f"The index at {store.location} did not answer ({exc.__class__.__name__}: {exc}). If it is a Chroma "
                "server, is it running? Otherwise rebuild the index with: bpd-rag ingest --rebuild"
            )
            if request:
                self._unreachable = error
            raise error from exc

    def _watch(self) -> None:
        """Start the watcher thread once; it holds the retriever only while refreshing, so it ends with it."""
        if self._watcher is not None or self._stop.is_set():
            return
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=_watch_index,
                    args=(weakref.ref(self), self._stop, self.reload_interval_s),
                    name="bpd-rag-index-watcher",
                    daemon=True,
                )
                self._watcher.start()

    def _close_retired(self, before: float) -> None:
        keep = []
        for retired_at, store in self._retired:
            if retired_at <= before:
                _close(store)
            else:
                keep.append((retired_at, store))
        self._retired = keep

    def close(self) -> None:
        """Stop watching and release the stores this retriever opened (a later question opens them again)."""
        self._stop.set()
        with self._lock:
            self._close_retired(float("inf"))
            snapshot = self._snapshot
            if snapshot is not None and snapshot.store is not self.store:
                _close(snapshot.store)

    def check(self) -> int:
        """Ask the store itself, cheaply and within its timeout, whether the index is there; the live chunks."""
        snapshot = self.snapshot()
        # request=False: an embedded index answers requests from the snapshot's own Chroma instance, whatever
        # the folder does meanwhile (an ingest holding it locked, a rebuild swapping it).
        with self._store_errors(self.store, request=False):
            if isinstance(self.store, LiveStore):
                self.store.version()
            elif self.store.read_manifest() is None:
                raise IndexMissingError(f"The index at {self.store.location} is empty. Build it with: bpd-rag ingest")
        return len(snapshot.chunks)

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
        try:
            with self._store_errors(snap.store, request=True):
                hits = snap.store.query(vector, n * 2)
        except IndexCorruptError:
            # `bpd-rag ingest --rebuild` in another process swaps a new folder in and removes the one this
            # snapshot reads: between the swap and the watcher's next look, load the new index now and ask it.
            self.refresh()
            fresh = self.snapshot()
            if fresh is snap:
                raise
            snap = fresh
            with self._store_errors(snap.store, request=True):
                hits = snap.store.query(vector, n * 2)
        dense = [(cid, sim) for cid, sim in hits if cid in snap.by_id][:n]
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


def _manifest_version(store: VectorStore) -> str:
    """The version of a store that cannot tell a cheaper one: its manifest."""
    manifest = store.read_manifest()
    return manifest.to_json() if manifest is not None else ""


def _close(store: VectorStore) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # a store that cannot be closed is left to the garbage collector
            log.exception("closing the replaced index failed")


def _again(exc: BpdRagError) -> BpdRagError:
    """A new exception like exc: one instance raised in many threads would collect all their tracebacks."""
    return type(exc)(*exc.args)


def _watch_index(ref: weakref.ReferenceType[Retriever], stop: threading.Event, interval: float) -> None:
    """The watcher thread: every interval, let the retriever look for a changed index, until it is closed or gone."""
    while not stop.wait(interval):
        retriever = ref()
        if retriever is None:
            return
        retriever.refresh()
        del retriever


def load_shorthand(path: Path) -> dict[str, str]:
    """The reviewed word replacements of a shorthand file (data/answering/shorthand.yaml)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        entries = data["words"]
        if not isinstance(entries, dict):
            raise TypeError("'words' must be a mapping of word: replacement")
        return {str(k).lower(): str(v) for k, v in entries.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{path} cannot be read ({exc}). Fix the file or reinstall bpd-rag.") from exc
