"""Scale: query latency and memory at 1k, 10k and 100k chunks, embedded Chroma and a `chroma run` server.

Vectors are random unit vectors (384 dimensions, like MiniLM); chunk texts are words drawn from the
corpus' own word frequencies, so BM25 posting lists are as long as they would be for this kind of text.
Each index is built once in a subprocess; each measurement runs in a fresh subprocess, so its memory
figures are those of a process that opens an existing index and serves queries.

`python -m bench.scale build|measure ...` is the worker; `scale_benchmark` drives it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CORPUS, ROOT, chroma_server, log, proc_memory_mb, run_worker, summarise_ms

SIZES = (1_000, 10_000, 100_000)
SCALE_CACHE = ROOT / ".bpd_rag" / "bench" / "scale-cache"
GENERATOR_VERSION = "v1"  # bump when build() makes different chunks or vectors
DIMENSION = 384
CHUNKS_PER_DOC = 10
QUERIES = 40
EMBEDDER_NAME = "bench:synthetic"


def _corpus_words() -> list[str]:
    from bpd_rag.corpus import load_corpus

    words: list[str] = []
    for doc in load_corpus(CORPUS).documents:
        words.extend(re.findall(r"[A-Za-z][A-Za-z'-]*|\d+(?:\.\d+)?", doc.text))
    return words


def _unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _questions() -> list[str]:
    from bench.common import question_set

    return [q.text for q in question_set().measured]


def build(size: int, path: Path, seed: int = 11) -> dict[str, Any]:
    """An embedded Chroma index of `size` synthetic chunks, written through ChromaStore.add, with a manifest."""
    from bpd_rag.store import ChromaStore, Manifest
    from bpd_rag.types import Chunk

    words = _corpus_words()
    rng = random.Random(seed)
    chunks: list[Chunk] = []
    for i in range(size):
        doc = f"doc-{i // CHUNKS_PER_DOC:06d}"
        text = " ".join(rng.choices(words, k=rng.randint(60, 110))) + "."
        chunks.append(
            Chunk(
                chunk_id=f"{doc}::h::{i % CHUNKS_PER_DOC:04d}",
                doc_id=doc,
                index=i % CHUNKS_PER_DOC,
                text=text,
                start=0,
                end=len(text),
                heading="Section" if i % 4 == 0 else None,
                title=f"Document {doc}",
                source_type="news",
                publisher="Synthetic",
                doc_hash="h",
            )
        )
    vectors = _unit_vectors(size, seed)
    store = ChromaStore.embedded(path, create=True)
    started = time.perf_counter()
    store.add(chunks, vectors.tolist())
    add_s = time.perf_counter() - started
    docs = {c.doc_id: "h" for c in chunks}
    store.write_manifest(Manifest(embedder=EMBEDDER_NAME, dimension=DIMENSION, chunking={}, docs=docs))
    store.close()
    return {"size": size, "add_s": add_s, "add_per_s": size / add_s}


class _StubEmbedder:
    """Random query vectors (the model's cost is measured elsewhere), named like the synthetic index."""

    name = EMBEDDER_NAME
    dimension = DIMENSION
    max_tokens = 256

    def __init__(self) -> None:
        self._vectors = _unit_vectors(64, seed=99)
        self._next = 0

    def embed_query(self, text: str) -> list[float]:
        self._next = (self._next + 1) % len(self._vectors)
        return [float(x) for x in self._vectors[self._next]]

    def embed_documents(self, texts: Sequence[str], queries: Sequence[str] = ()) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def measure(size: int, path: Path, url: str | None) -> dict[str, Any]:
    """Open the index (embedded folder or server), then time store.query, BM25, fusion and memory."""
    from bpd_rag.retrieval import Retriever
    from bpd_rag.settings import RetrievalSettings
    from bpd_rag.store import ChromaStore
    from bpd_rag.textutil import terms

    pid = os.getpid()
    memory: dict[str, float] = {"start": proc_memory_mb(pid).get("VmRSS", 0.0)}
    store = ChromaStore.server(url) if url else ChromaStore.embedded(path)
    settings = RetrievalSettings()
    n = settings.candidates * 2  # what Retriever.retrieve asks the store for
    queries = _unit_vectors(QUERIES, seed=5)
    started = time.perf_counter()
    store.query(queries[0].tolist(), n)
    first_query_s = time.perf_counter() - started
    query_s = []
    for vector in queries:
        as_list = vector.tolist()
        started = time.perf_counter()
        store.query(as_list, n)
        query_s.append(time.perf_counter() - started)
    memory["after_vector_queries"] = proc_memory_mb(pid).get("VmRSS", 0.0)

    retriever = Retriever(store, _StubEmbedder(), settings)  # type: ignore[arg-type]
    started = time.perf_counter()
    snap = retriever.snapshot()
    snapshot_s = time.perf_counter() - started
    memory["after_snapshot"] = proc_memory_mb(pid).get("VmRSS", 0.0)

    questions = _questions()
    bm25_s = []
    for question in questions:
        query_terms = terms(question)
        started = time.perf_counter()
        snap.bm25.top(query_terms, settings.candidates)
        bm25_s.append(time.perf_counter() - started)
    retrieve_s = []
    passages_s = []
    for question in questions:
        started = time.perf_counter()
        retriever.retrieve(question)
        retrieve_s.append(time.perf_counter() - started)
        # What Pipeline.passages_for does around it: spelling correction and the neighbouring chunks.
        started = time.perf_counter()
        retriever.with_neighbours(retriever.retrieve(retriever.correct_spelling(question)))
        passages_s.append(time.perf_counter() - started)
    memory["peak"] = proc_memory_mb(pid).get("VmHWM", 0.0)
    return {
        "size": size,
        "backend": "server" if url else "embedded",
        "first_query_ms": first_query_s * 1000,
        "vector_query": summarise_ms(query_s),
        "snapshot_s": snapshot_s,
        "bm25_top": summarise_ms(bm25_s),
        "retrieve": summarise_ms(retrieve_s),
        "passages_for": summarise_ms(passages_s),
        "rss_mb": memory,
    }


def _worker(args: Sequence[str], timeout_s: float = 600) -> dict[str, Any]:
    return run_worker("bench.scale", args, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"}, timeout_s=timeout_s)


def _cached_build(size: int, workdir: Path, cache: Path | None) -> tuple[Path, dict[str, Any]]:
    """The folder of a synthetic index of `size` chunks, built now or taken from the cache of an earlier run.

    Building 100k chunks takes about two minutes, most of it Chroma's writes; the index only depends on
    the size, this generator and the Chroma version, so `make bench` keeps it between runs.
    """
    import chromadb

    if cache is None:
        path = workdir / f"scale-{size}"
        log(f"scale: building {size} chunks")
        return path, _worker(["build", "--size", str(size), "--path", str(path)])
    path = cache / f"{GENERATOR_VERSION}-chroma{chromadb.__version__}-{size}"
    record = path / "bench-build.json"
    if record.exists():
        log(f"scale: {size} chunks from {path}")
        return path, {**json.loads(record.read_text()), "cached": True}
    building = path.with_name(path.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    log(f"scale: building {size} chunks (kept in {cache} for the next run)")
    built = _worker(["build", "--size", str(size), "--path", str(building)])
    building.rename(path)
    record.write_text(json.dumps(built))
    return path, {**built, "cached": False}


def scale_benchmark(workdir: Path, sizes: Sequence[int] = SIZES, cache: Path | None = None) -> list[dict[str, Any]]:
    """Build each size once, then measure it embedded and through a `chroma run` server on the same folder."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        path, built = _cached_build(size, workdir, cache)
        log(f"scale: measuring {size} embedded")
        embedded = _worker(["measure", "--size", str(size), "--path", str(path)])
        log(f"scale: measuring {size} through chroma run")
        with chroma_server(path, workdir / f"chroma-{size}.log") as (url, process):
            server = _worker(["measure", "--size", str(size), "--path", str(path), "--url", url])
            server["chroma_server_rss_mb"] = proc_memory_mb(process.pid)
        rows.append({"size": size, "build": built, "embedded": embedded, "server": server})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["build", "measure"])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--path", type=Path, required=True)
    parser.add_argument("--url")
    args = parser.parse_args()
    result = build(args.size, args.path) if args.mode == "build" else measure(args.size, args.path, args.url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
