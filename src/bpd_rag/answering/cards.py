"""Serving answer cards: a calibrated matcher decides whether a reviewed card answers the question.

The matcher reads features of the best card for the question (its closest phrasing, the card's own question,
shared words, the lead over the next card) and gives the probability that the card is right; the model and
its threshold are fitted on the dev split of the gold sets (`python -m bpd_rag.answering.fit`) and stored in
data/answering/card_matcher.json. Below the threshold, the extractive (or LLM) answer is given instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bpd_rag.cards import Card, card_citations
from bpd_rag.embeddings import Embedder
from bpd_rag.errors import ConfigurationError
from bpd_rag.fitted import packaged, read_logistic
from bpd_rag.textutil import expand_shorthand, terms
from bpd_rag.types import Answer, AnswerKind, Document, Question

# What the matcher reads of each card for a question: the closest of the card's question and phrasings to the
# standalone query and to the message as typed, the card's answer text to the query, the share of the
# question's words the card's phrasings use, and the lead of the card over the best other card on the query,
# on the message as typed (a follow-up's own words) and on words. The share of the question's words in the
# card's *answer* is not read: the dev labels reward it (a card is "right" when its text has the gold
# phrases), and with it a card's own phrasing ("will ketamine help my bpd") lost to a card whose answer
# shares more words.
# "both" is the lower of the two closeness values: a follow-up's card must fit the topic of the conversation
# (the standalone query) and what the new message asks ("what dose was used for that?").
FEATURES = (
    "closest",
    "closest_message",
    "both",
    "content",
    "words",
    "lead",
    "lead_message",
    "lead_both",
    "lead_words",
)


# The cosine at which a question is one of a card's own phrasings, as typed and as resolved (MiniLM puts
# rewordings of one question at 0.8-0.9 and a changed word or two at 0.95 and above).
EXACT = 0.95


def default_matcher_file() -> Path:
    return packaged("answering", "card_matcher.json")


@dataclass(frozen=True)
class Match:
    """The best card for a question, the features the matcher read, and its probability of being right."""

    card: Card
    features: dict[str, float]
    probability: float


@dataclass(frozen=True)
class MatcherModel:
    """A conditional logit over FEATURES: each card's score, turned into the probability that it is the card
    asked about by a softmax over every card; the top card is served above the threshold (chosen on dev).

    The softmax only compares the cards of one question, so it cannot say that none of them fits: "are you a
    real person" shares "real" and "person" with the phrasings of one card and gets most of the probability at
    a cosine of 0.14. No card is served whose closest question or phrasing is below `floor`, the lowest cosine
    of a right best card among the dev questions rounded down to a twentieth, also chosen on dev."""

    weights: dict[str, float]
    bias: float
    threshold: float
    meta: dict[str, Any]
    floor: float = 0.0

    def score(self, features: Mapping[str, float]) -> float:
        return self.bias + sum(self.weights[f] * features[f] for f in FEATURES)

    def probabilities(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """The probability of each card of one question (they sum to 1)."""
        scores = [self.score(f) for f in rows]
        top = max(scores, default=0.0)
        exps = [math.exp(v - top) for v in scores]
        total = sum(exps) or 1.0
        return [e / total for e in exps]

    @classmethod
    def load(cls, path: Path | None = None) -> MatcherModel:
        file = Path(path) if path else default_matcher_file()
        weights, bias, threshold, meta = read_logistic(file, FEATURES, "threshold", "card matcher")
        floor = float(json.loads(file.read_text("utf-8")).get("floor", 0.0))
        return cls(weights=weights, bias=bias, threshold=threshold, meta=meta, floor=floor)

    def save(self, path: Path) -> None:
        data = {
            "features": list(FEATURES),
            "weights": self.weights,
            "bias": self.bias,
            "threshold": self.threshold,
            "floor": self.floor,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**data, "meta": self.meta}, indent=2) + "\n", "utf-8")


class OnceVectors:
    """Vectors computed on first use, once, under a lock (requests run in parallel threads)."""

    def __init__(self, compute: Callable[[], np.ndarray]) -> None:
        self._compute = compute
        self._value: np.ndarray | None = None
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._value is None:
                self._value = self._compute()
            return self._value


class CardMatcher:
    """Finds the card that answers a question, if one does; card vectors are computed once (and cached on disk)."""

    def __init__(
        self,
        cards: Sequence[Card],
        documents: Mapping[str, Document],
        embedder: Embedder,
        model: MatcherModel | None,
        cache_dir: Path | None = None,
        shorthand: Mapping[str, str] | None = None,
    ) -> None:
        self.cards = list(cards)
        self.documents = documents
        self.embedder = embedder
        self.model = model
        self.cache_dir = cache_dir
        # The cards' questions and phrasings are read as a question is: with the reviewed shorthand spelled out
        # ("how much did they give ppl" is matched as "... people", as the question it is compared with is).
        phrasings = [[expand_shorthand(text, shorthand or {}) for text in card.texts] for card in self.cards]
        self._owner = [n for n, texts in enumerate(phrasings) for _ in texts]
        self._contents = [" ".join(s.text for s in card.statements) for card in self.cards]
        self._texts = [text for texts in phrasings for text in texts] + self._contents
        self._card_terms = [set(terms(" ".join(texts))) for texts in phrasings]
        documents_with = Counter(t for bag in self._card_terms for t in bag)
        self._idf = {t: math.log(1 + len(self.cards) / n) for t, n in documents_with.items()}
        self._idf_unknown = math.log(1 + len(self.cards))
        self._vectors = OnceVectors(
            lambda: self._cached() if self._texts else np.zeros((0, self.embedder.dimension), np.float32)
        )

    # --- vectors ------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Embed the cards' questions and phrasings now (a server does this at startup)."""
        self._card_vectors()

    def _card_vectors(self) -> np.ndarray:
        return self._vectors.get()

    def _cached(self) -> np.ndarray:
        return _cached_vectors(
            self.cache_dir,
            "cards",
            self.embedder.name,
            self._texts,
            self.embedder.dimension,
            self.embedder.embed_documents,
        )

    # --- matching -----------------------------------------------------------------------------------

    def _similarities(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """For each card: the cosine of its closest question or phrasing to the text, and of its answer."""
        vectors = self._card_vectors()
        phrasings = len(self._owner)
        best = np.full(len(self.cards), -1.0, dtype=np.float32)
        if not len(vectors):
            return best, best
        similarity = vectors @ np.asarray(self.embedder.embed_query(text), dtype=np.float32)
        np.maximum.at(best, self._owner, similarity[:phrasings])
        return best, similarity[phrasings:]

    def _words(self, text: str, bags: Sequence[set[str]]) -> np.ndarray:
        """For each card, the share of the question's word weight (idf over the cards) that its bag contains."""
        asked = set(terms(text))
        weight = {t: self._idf.get(t, self._idf_unknown) for t in asked}
        total = sum(weight.values()) or 1.0
        return np.array([sum(w for t, w in weight.items() if t in bag) / total for bag in bags], dtype=np.float32)

    def features(self, question: Question) -> list[dict[str, float]]:
        """The matcher's features of every card for the question (in card order)."""
        closest, content = self._similarities(question.query)
        # The message on its own, as typed: a follow-up's own words, apart from the turns its query borrows. A first
        # message has nothing to borrow, and its query is its own words spelled out ("does it work" is "does
        # ketamine work"), so both read the query.
        own = question.text if question.history else question.query
        closest_message = self._similarities(own)[0] if own != question.query else closest
        words = self._words(question.query, self._card_terms)

        def lead(values: np.ndarray) -> np.ndarray:
            """Each card's value minus the best value among the other cards."""
            if len(values) < 2:
                return np.zeros_like(values)
            order = np.argsort(-values, kind="stable")
            best, second = values[order[0]], values[order[1]]
            out = values - best
            out[order[0]] = best - second
            return out

        both = np.minimum(closest, closest_message)
        leads = lead(closest)
        leads_message = lead(closest_message)
        leads_both = lead(both)
        leads_words = lead(words)
        out = []
        for n in range(len(self.cards)):
            out.append(
                {
                    "closest": float(closest[n]),
                    "closest_message": float(closest_message[n]),
                    "both": float(both[n]),
                    "content": float(content[n]),
                    "words": float(words[n]),
                    "lead": float(leads[n]),
                    "lead_message": float(leads_message[n]),
                    "lead_both": float(leads_both[n]),
                    "lead_words": float(leads_words[n]),
                }
            )
        return out

    def candidates(
        self, question: Question, model: MatcherModel | None = None
    ) -> list[tuple[Card, dict[str, float], float]]:
        """Every card with its features and probability of being right, most likely first."""
        model = model or self.model
        if not self.cards or model is None:
            return []
        rows = self.features(question)
        scored = list(zip(self.cards, rows, model.probabilities(rows), strict=True))
        return sorted(scored, key=lambda row: -row[2])

    def match(self, question: Question) -> Match | None:
        """The card to serve, or None when no card is likely enough to be right (or there is no fitted model).

        A question asked in the very words of a card's reviewed question or phrasing (EXACT) gets that card
        even when the matcher's probability is spread over several close cards, or leans to another card: "can
        ketamine help bpd" is what the card was written for, whatever its neighbours, and "whats the evidence for
        ketamine in bpd" (0.96 from a phrasing of the card on how strong the evidence is) went to the card on the
        uncontrolled study's limits, whose answer shares more of its words."""
        if self.model is None:
            return None
        found = [row for row in self.candidates(question) if row[1]["closest"] >= self.model.floor]
        if not found:
            return None
        card, features, probability = max(found, key=lambda row: row[1]["both"])
        if features["both"] >= EXACT:
            return Match(card, features, probability)
        if found[0][2] < self.model.threshold:
            return None
        card, features, probability = found[0]
        return Match(card, features, probability)

    def answer(self, match: Match) -> Answer:
        """The card as an answer: its statements, and its quotes as citations exactly like extracted quotes."""
        statements, citations = card_citations(match.card, self.documents)
        kind: AnswerKind = "no_answer" if match.card.kind == "no_answer" else "answer"
        return Answer(kind=kind, statements=statements, citations=citations, answerer=f"card:{match.card.id}")


# --- questions in other languages ---------------------------------------------------------------------------


def default_cross_lingual_file() -> Path:
    return packaged("answering", "cross_lingual.json")


class TextEncoder(Protocol):
    """What the cross-lingual match reads texts with (multilingual-e5-small; a double in unit tests)."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class CrossLingualModel:
    """Whether the card closest to a question in another language (read by a multilingual model) answers it: a
    logistic regression over the closest card's cosine and its lead over the next card, served above the
    threshold (both fitted on dev, `python -m bpd_rag.answering.fit`)."""

    cosine: float
    lead: float
    bias: float
    threshold: float
    meta: dict[str, Any]

    def probability(self, cosine: float, lead: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.cosine * cosine + self.lead * lead + self.bias)))

    @classmethod
    def load(cls, path: Path | None = None) -> CrossLingualModel:
        path = Path(path) if path else default_cross_lingual_file()
        try:
            data = json.loads(path.read_text("utf-8"))
            weights = data["weights"]
            return cls(
                cosine=float(weights["cosine"]),
                lead=float(weights["lead"]),
                bias=float(data["bias"]),
                threshold=float(data["threshold"]),
                meta=data.get("meta", {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"The cross-lingual card match {path} cannot be read ({exc}). Refit it with: "
                "python -m bpd_rag.answering.fit"
            ) from exc

    def save(self, path: Path) -> None:
        data = {
            "weights": {"cosine": self.cosine, "lead": self.lead},
            "bias": self.bias,
            "threshold": self.threshold,
            "meta": self.meta,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")


class CrossLingualMatcher:
    """Finds the English card that answers a question asked in another language: multilingual-e5 reads the
    question and the cards' questions and phrasings (their vectors computed once, cached on disk)."""

    def __init__(
        self,
        cards: Sequence[Card],
        encoder: TextEncoder,
        model: CrossLingualModel | None,
        cache_dir: Path | None = None,
    ) -> None:
        self.cards = list(cards)
        self.encoder = encoder
        self.model = model
        self.cache_dir = cache_dir
        self._owner = [n for n, card in enumerate(self.cards) for _ in card.texts]
        self._texts = [text for card in self.cards for text in card.texts]
        self._vectors = OnceVectors(
            lambda: _cached_vectors(
                self.cache_dir, "cards-multilingual", self.encoder.name, self._texts, None, self.encoder.encode
            )
        )

    def prepare(self) -> None:
        """Read the cards' questions and phrasings now (a few seconds the first time; cached after)."""
        self._card_vectors()

    def _card_vectors(self) -> np.ndarray:
        return self._vectors.get()

    def closest(self, text: str) -> np.ndarray:
        """For each card, the cosine of its closest question or phrasing to the text."""
        best = np.full(len(self.cards), -1.0, dtype=np.float32)
        if not self._texts:
            return best
        similarity = self._card_vectors() @ np.asarray(self.encoder.encode([text])[0], dtype=np.float32)
        np.maximum.at(best, self._owner, similarity)
        return best

    def features(self, text: str) -> tuple[int, float, float] | None:
        """The closest card (its index), its cosine and its lead over the next card; None without cards."""
        if len(self.cards) < 2:
            return None
        closest = self.closest(text)
        order = np.argsort(-closest, kind="stable")
        return int(order[0]), float(closest[order[0]]), float(closest[order[0]] - closest[order[1]])

    def match(self, text: str) -> Match | None:
        """The card to serve for the question, or None (no fitted model, or no card leads clearly enough)."""
        if self.model is None:
            return None
        found = self.features(text)
        if found is None:
            return None
        index, cosine, lead = found
        probability = self.model.probability(cosine, lead)
        if probability < self.model.threshold:
            return None
        return Match(self.cards[index], {"cross_lingual": cosine, "lead": lead}, probability)


def _cached_vectors(
    folder: Path | None,
    prefix: str,
    model: str,
    texts: Sequence[str],
    dimension: int | None,
    encode: Callable[[list[str]], Any],
) -> np.ndarray:
    """The texts' vectors from the cache file named by the model and the texts, or encoded and saved there.

    A damaged or mismatched cache is computed again; a cache that cannot be written only costs the next start
    the time to compute it again."""
    key = hashlib.sha256("\n".join([model, *texts]).encode()).hexdigest()[:20]
    path = folder / f"{prefix}-{key}.npy" if folder is not None else None
    if path is not None and path.is_file():
        try:
            vectors = np.load(path)
            if vectors.shape[0] == len(texts) and (dimension is None or vectors.shape[1] == dimension):
                return np.asarray(vectors, dtype=np.float32)
        except (OSError, ValueError, IndexError):
            pass
    vectors = np.asarray(encode(list(texts)), dtype=np.float32)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
        except OSError:
            pass
    return vectors
