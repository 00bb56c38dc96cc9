"""Ingest throughput: the corpus and a scaled corpus, next to the raw encoder on the same chunk texts."""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import CORPUS, raw_encode
from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.index import embedding_text
from bpd_rag.pipeline import build_pipeline
from bpd_rag.settings import Settings
from bpd_rag.store import ChromaStore, release_embedded

SCALED_DOCS = 2000
_FIRST_SENTENCE = re.compile(r".+?(?:[.!?](?=\s)|$)", re.S)


def corpus_paragraphs(corpus_dir: Path = CORPUS) -> tuple[list[str], list[str]]:
    """The corpus' body paragraphs and section headings."""
    paragraphs: list[str] = []
    headings: list[str] = []
    for doc in load_corpus(corpus_dir).documents:
        for block in re.split(r"\n\s*\n", doc.text):
            block = block.strip()
            if not block:
                continue
            if block.startswith("#"):
                headings.append(block.lstrip("#").strip())
            else:
                paragraphs.append(block)
    return paragraphs, headings


def write_scaled_corpus(folder: Path, n_docs: int = SCALED_DOCS, seed: int = 7) -> Path:
    """n_docs Markdown files, each a corpus paragraph with a sentence of another (every third under a heading)."""
    paragraphs, headings = corpus_paragraphs()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    publishers = ["Clinic A", "Clinic B", "News desk", "Research summary"]
    for i in range(n_docs):
        first, second = rng.sample(paragraphs, 2)
        # A paragraph and the first sentence of another: new text, about one chunk per document.
        body = f"{first}\n\n{_FIRST_SENTENCE.match(second).group(0)}"  # type: ignore[union-attr]
        if i % 3 == 0 and headings:
            body = f"## {rng.choice(headings)}\n\n{body}"
        front = f'---\ntitle: "Scaled document {i}"\npublisher: "{publishers[i % 4]}"\nsource_type: "news"\n---\n\n'
        (folder / f"scaled-{i:05d}.md").write_text(front + body + "\n", encoding="utf-8")
    return folder


def ingest_rep(settings: Settings, embedder: SentenceTransformerEmbedder, index: Path) -> dict[str, Any]:
    """Full ingest into a fresh embedded index, raw encoding of its chunk texts, then a no-change re-ingest.

    `index` must be a new folder: Chroma keeps one instance per folder in a process, so a folder deleted
    and made again would be served from the old instance.
    """
    if index.exists():
        raise ValueError(f"{index} exists: each ingest repetition needs a new folder")
    run_settings = settings.model_copy(update={"store": settings.store.model_copy(update={"path": index})})
    pipeline = build_pipeline(run_settings, embedder)
    embedder.forget_recent()  # an earlier repetition's vectors would make the ingest look faster than the model
    started = time.perf_counter()
    report = pipeline.ingest()
    ingest_s = time.perf_counter() - started

    store = ChromaStore.embedded(index)
    texts = [embedding_text(c) for c in store.all_chunks()]
    started = time.perf_counter()
    raw_encode(embedder, texts)
    raw_s = time.perf_counter() - started

    again = build_pipeline(run_settings, embedder)
    started = time.perf_counter()
    unchanged = again.ingest()
    reingest_s = time.perf_counter() - started
    for opened in (store, pipeline.store, again.store):
        close = getattr(opened, "close", None)
        if close is not None:
            close()
    release_embedded(index)
    shutil.rmtree(index, ignore_errors=True)
    return {
        "documents": len(report.added),
        "chunks": report.chunks_written,
        "ingest_s": ingest_s,
        "chunks_per_s": report.chunks_written / ingest_s,
        "raw_encode_s": raw_s,
        "raw_chunks_per_s": len(texts) / raw_s,
        "overhead": ingest_s / raw_s - 1.0,
        "reingest_s": reingest_s,
        "reingest_embedded": unchanged.chunks_written,
    }
