"""In one process: the bare query-embedding floor, Pipeline.ask and the LangChain baseline over the same questions.

Each repetition runs in a fresh interpreter (`python -m bench.inprocess`, like a fresh server): a second
pipeline built in the same process answered ~12 ms slower than the first, for reasons outside this code.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import lc_baseline
from bench.common import BenchEnv, Question, QuestionSet, question_set, raw_encode, run_worker, summarise_ms
from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.pipeline import build_pipeline
from bpd_rag.settings import Settings
from bpd_rag.types import Message


def _ask_s(answerer: lc_baseline.Baseline, question: Question) -> float:
    """Seconds one answer takes (history included when the question has one)."""
    history = [Message(role=r, content=c) for r, c in question.history]  # type: ignore[arg-type]
    started = time.perf_counter()
    answerer.ask(question.text, history)
    return time.perf_counter() - started


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
    """Seconds for the model alone to embed one text (no cache, no conversion to lists)."""
    started = time.perf_counter()
    raw_encode(embedder, [text])
    return time.perf_counter() - started


def fresh_query_cache(embedder: SentenceTransformerEmbedder) -> SentenceTransformerEmbedder:
    """The same loaded model with an empty query-vector cache, as in a freshly started server."""
    clone = copy.copy(embedder)
    if hasattr(clone, "_queries"):  # the cache of SentenceTransformerEmbedder.embed_query
        clone._queries = OrderedDict()
        clone._queries_lock = threading.Lock()
    return clone


def inprocess_rep(settings: Settings, embedder: SentenceTransformerEmbedder, questions: QuestionSet) -> dict[str, Any]:
    """A fresh pipeline and baseline, warmed like the server; then the floor, ours and the baseline, a pass each.

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
    # Each in its own pass over the questions: an answer measured right after other work (or a pause) was
    # ~12 ms slower than one measured after the previous answer, on this virtual machine.
    floor = [bare_encode_s(embedder, q.text) for q in questions.measured]
    ours = [_ask_s(pipeline, q) for q in questions.measured]
    theirs = [_ask_s(baseline, q) for q in questions.measured]
    # Last: changing PyTorch's thread count resizes its thread pool, which slowed the passes after it.
    with torch_threads(default_threads):
        floor_default = [bare_encode_s(embedder, q.text) for q in questions.measured]
    answerable = [q.expected_kind == "answer" for q in questions.measured]
    ours_answerable = [t for t, a in zip(ours, answerable, strict=True) if a]
    theirs_answerable = [t for t, a in zip(theirs, answerable, strict=True) if a]
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


def inprocess_subprocess(bench_env: BenchEnv) -> dict[str, Any]:
    """One repetition in a fresh interpreter, with the benchmark's index and settings (from the environment)."""
    return run_worker("bench.inprocess", env=bench_env.env(), cwd=bench_env.root)


if __name__ == "__main__":
    worker_settings = Settings()  # the BPD_RAG_* environment of BenchEnv.env()
    print(json.dumps(inprocess_rep(worker_settings, SentenceTransformerEmbedder(), question_set())))
