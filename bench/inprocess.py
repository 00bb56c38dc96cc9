"""In one process: the bare query-embedding floor, Pipeline.ask and the LangChain baseline, question by question."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import lc_baseline
from bench.common import QuestionSet, summarise_ms
from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.pipeline import build_pipeline
from bpd_rag.settings import Settings
from bpd_rag.types import Message


def server_model_threads(settings: Settings) -> int:
    """The PyTorch threads `bpd-rag serve` uses (0: PyTorch's default), so in-process figures compare."""
    return int(getattr(settings.api, "model_threads", 0) or 0)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch intra-op threads of this (main) thread set for a while, then restored; 0 changes nothing."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bare_encode_s(embedder: SentenceTransformerEmbedder, text: str) -> float:
    """Seconds for the SentenceTransformer alone to embed one text (no cache, no wrapper)."""
    model = embedder._model  # the floor is the model itself, below anything our code adds
    started = time.perf_counter()
    model.encode([text], normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - started


def fresh_query_cache(embedder: SentenceTransformerEmbedder) -> SentenceTransformerEmbedder:
    """The same loaded model with an empty query-vector cache, as in a freshly started server."""
    clone = copy.copy(embedder)
    if hasattr(clone, "_queries"):  # the cache of SentenceTransformerEmbedder.embed_query
        clone._queries = OrderedDict()
        clone._queries_lock = threading.Lock()
    return clone


def inprocess_rep(settings: Settings, embedder: SentenceTransformerEmbedder, questions: QuestionSet) -> dict[str, Any]:
    """A fresh pipeline and baseline, warmed like the server, then floor / ours / baseline per question.

    The model runs with the server's thread count, so the floor is the floor of the server's answers.
    """
    import torch

    default_threads = torch.get_num_threads()
    with torch_threads(server_model_threads(settings)):
        return _inprocess_rep(settings, embedder, questions, default_threads)


def _inprocess_rep(
    settings: Settings, embedder: SentenceTransformerEmbedder, questions: QuestionSet, default_threads: int
) -> dict[str, Any]:
    pipeline = build_pipeline(settings, fresh_query_cache(embedder))
    # Its own query cache: the baseline embeds each question itself, and reuses it for its answerer as ours does.
    baseline, _source = lc_baseline.build(settings, fresh_query_cache(embedder))
    for question in questions.warmup:
        pipeline.ask(question.text)
        baseline.ask(question.text)
    floor: list[float] = []
    floor_default: list[float] = []
    ours: list[float] = []
    ours_answerable: list[float] = []
    theirs: list[float] = []
    theirs_answerable: list[float] = []
    for question in questions.measured:
        history = [Message(role=r, content=c) for r, c in question.history]  # type: ignore[arg-type]
        floor.append(bare_encode_s(embedder, question.text))
        started = time.perf_counter()
        pipeline.ask(question.text, history)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        baseline.ask(question.text, history)
        theirs.append(time.perf_counter() - started)
        if question.expected_kind == "answer":
            ours_answerable.append(ours[-1])
            theirs_answerable.append(theirs[-1])
    # Apart, not per question: changing PyTorch's thread count resizes its thread pool, which costs time.
    with torch_threads(default_threads):
        for question in questions.measured:
            floor_default.append(bare_encode_s(embedder, question.text))
    close = getattr(baseline, "close", None)
    if close is not None:
        close()
    return {
        "floor": summarise_ms(floor),
        "floor_default_threads": summarise_ms(floor_default),
        "pipeline": summarise_ms(ours),
        "pipeline_answerable": summarise_ms(ours_answerable),
        "baseline": summarise_ms(theirs),
        "baseline_answerable": summarise_ms(theirs_answerable),
    }
