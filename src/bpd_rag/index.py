"""Build or refresh the index: unchanged documents are skipped by content hash; the manifest swap is atomic."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bpd_rag.chunking import chunk_document
from bpd_rag.corpus import DEFAULT_MAX_FILE_BYTES, load_corpus
from bpd_rag.embeddings import Embedder
from bpd_rag.errors import CorpusFileError, IndexMissingError
from bpd_rag.store import Manifest, VectorStore
from bpd_rag.types import Chunk, Document

# Chunks embedded and written in one call during ingest (the model batches them further itself, texts of
# similar length together: the more texts per call, the less padding).
_EMBED_BATCH = 1024
# (documents done, documents to embed, doc id): for progress bars.
ProgressCallback = Callable[[int, int, str], None]
# Looks at a document before it is indexed and returns warnings (e.g. instruction-like text).
DocumentScanner = Callable[[Document], list[str]]


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_previous: list[str] = field(default_factory=list)
    errors: list[CorpusFileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks_written: int = 0
    chunks_total: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "kept_previous": self.kept_previous,
            "errors": [{"path": e.path, "reason": e.reason} for e in self.errors],
            "warnings": self.warnings,
            "chunks_written": self.chunks_written,
            "chunks_total": self.chunks_total,
        }


def ingest(
    corpus_dir: Path,
    store: VectorStore,
    embedder: Embedder,
    max_tokens: int,
    overlap_sentences: int,
    progress: ProgressCallback | None = None,
    scanner: DocumentScanner | None = None,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> IngestReport:
    """Bring the index in line with the corpus folder, re-embedding only what changed.

    A file that cannot be read or is larger than max_file_bytes is reported in errors (None: no size limit);
    symbolic links are skipped with a warning.
    """
    loaded = load_corpus(corpus_dir, max_file_bytes=max_file_bytes)
    report = IngestReport(errors=loaded.errors, warnings=list(loaded.warnings))
    chunking = {"max_tokens": max_tokens, "overlap_sentences": overlap_sentences, "text_format": EMBEDDING_TEXT_FORMAT}
    old = store.read_manifest() or Manifest()
    # Each document is indexed under a version key that changes with its text, the chunking and the
    # embedder: re-chunking an unchanged text must not leave its old chunks looking live.
    recipe = json.dumps({"chunking": chunking, "embedder": embedder.name}, sort_keys=True)
    previous = old.docs
    if old.dimension and old.dimension != embedder.dimension:
        # A collection holds one vector size: the old vectors cannot stay beside the new ones.
        store.drop()

    todo: list[Document] = []
    new_docs: dict[str, str] = {}
    for loaded_document in loaded.documents:
        key = hashlib.sha256(f"{loaded_document.content_hash}|{recipe}".encode()).hexdigest()
        document = loaded_document.model_copy(update={"content_hash": key})
        new_docs[document.doc_id] = key
        if previous.get(document.doc_id) == key:
            report.unchanged.append(document.doc_id)
            continue
        if scanner is not None:  # warned when a document is added or changed, not again on every ingest
            report.warnings.extend(scanner(document))
        (report.updated if document.doc_id in old.docs else report.added).append(document.doc_id)
        todo.append(document)

    # A file that exists but cannot be read this time keeps its previous version: bad input loses nothing.
    broken_ids = {Path(e.path).stem for e in loaded.errors}
    for doc_id, doc_hash in previous.items():
        if doc_id not in new_docs and doc_id in broken_ids:
            new_docs[doc_id] = doc_hash
            report.kept_previous.append(doc_id)
    report.removed = sorted(set(old.docs) - set(new_docs))

    # Chunks of several documents are embedded and written together: one model call or one Chroma write
    # per document would run the model on batches of one or two texts and pay a write (~8 ms) per document.
    # A crash between writes loses nothing: new chunks are not live until the manifest below names them.
    pending: list[list[Chunk]] = []

    def write_pending() -> None:
        chunks = [c for document_chunks in pending for c in document_chunks]
        store.add(chunks, embedder.embed_documents([embedding_text(c) for c in chunks]))
        report.chunks_written += len(chunks)
        pending.clear()

    for done, document in enumerate(todo):
        if progress is not None:
            progress(done, len(todo), document.doc_id)
        pending.append(chunk_document(document, embedder.count_tokens, max_tokens, overlap_sentences))
        if sum(len(chunks) for chunks in pending) >= _EMBED_BATCH:
            write_pending()
    if pending:
        write_pending()
    if progress is not None:
        progress(len(todo), len(todo), "")

    manifest = Manifest(embedder=embedder.name, dimension=embedder.dimension, chunking=chunking, docs=new_docs)
    if todo or report.removed or old.docs != new_docs or old.embedder != embedder.name:
        store.write_manifest(manifest)
    report.chunks_total = collect_garbage(store, manifest)
    return report


# Bump when embedding_text changes: stored vectors of another format are re-embedded on the next ingest.
EMBEDDING_TEXT_FORMAT = 2


def embedding_text(chunk: Chunk) -> str:
    """What is indexed for a chunk: who published it and its section heading give a short passage its context."""
    context = " — ".join(part for part in (chunk.publisher, chunk.heading) if part)
    return f"{context}: {chunk.text}" if context else chunk.text


def collect_garbage(store: VectorStore, manifest: Manifest) -> int:
    """Delete chunks the manifest does not point at (old versions, leftovers of an interrupted ingest)."""
    try:
        chunks = store.all_chunks()
    except IndexMissingError:  # nothing was ever written (e.g. an empty corpus)
        return 0
    stale = [c.chunk_id for c in chunks if not manifest.is_live(c)]
    if stale:
        store.delete(stale)
    return len(chunks) - len(stale)
