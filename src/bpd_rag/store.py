"""Vector store: Chroma, embedded (PersistentClient) or a Chroma server, with embeddings always passed in."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from bpd_rag.errors import IndexCorruptError, IndexMissingError
from bpd_rag.types import Chunk

if TYPE_CHECKING:
    from bpd_rag.settings import StoreSettings

_MANIFEST_KEY = "bpd_rag_manifest"
_BATCH = 1000


@dataclass
class Manifest:
    """What the live index holds: one content hash per document, and how the chunks were made.

    Chunks whose (doc_id, doc_hash) is not in the manifest are invisible: an ingest writes new chunks
    first and swaps the manifest in one write, so an interrupted ingest leaves the previous index usable.
    """

    embedder: str = ""
    dimension: int = 0
    chunking: dict[str, int] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"embedder": self.embedder, "dimension": self.dimension, "chunking": self.chunking, "docs": self.docs},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> Manifest:
        data = json.loads(raw)
        return cls(
            embedder=data.get("embedder", ""),
            dimension=int(data.get("dimension", 0)),
            chunking=dict(data.get("chunking", {})),
            docs=dict(data.get("docs", {})),
        )

    def is_live(self, chunk: Chunk) -> bool:
        return self.docs.get(chunk.doc_id) == chunk.doc_hash


class VectorStore(Protocol):
    """Stores chunks with their vectors; finds the nearest ones; keeps the manifest."""

    location: str

    def add(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None: ...

    def delete(self, chunk_ids: Sequence[str]) -> None: ...

    def query(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]: ...

    def all_chunks(self) -> list[Chunk]: ...

    def read_manifest(self) -> Manifest | None: ...

    def write_manifest(self, manifest: Manifest) -> None: ...

    def drop(self) -> None: ...


def _chunk_metadata(chunk: Chunk) -> dict[str, str | int]:
    # Chroma metadata cannot hold None: empty strings stand for "absent".
    return {
        "doc_id": chunk.doc_id,
        "index": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
        "heading": chunk.heading or "",
        "title": chunk.title,
        "source_type": chunk.source_type,
        "url": chunk.url or "",
        "publisher": chunk.publisher or "",
        "doc_hash": chunk.doc_hash,
    }


def _chunk_from_record(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta["doc_id"]),
        index=int(meta["index"]),
        text=text,
        start=int(meta["start"]),
        end=int(meta["end"]),
        heading=str(meta.get("heading") or "") or None,
        title=str(meta.get("title", "")),
        source_type=str(meta.get("source_type", "unknown")),
        url=str(meta.get("url") or "") or None,
        publisher=str(meta.get("publisher") or "") or None,
        doc_hash=str(meta.get("doc_hash", "")),
    )


class ChromaStore:
    """One Chroma collection; the client is embedded or remote, the code is the same."""

    def __init__(self, client: Any, collection_name: str, location: str) -> None:
        self._client = client
        self.collection_name = collection_name
        self.location = location
        self._collection: Any = None

    @classmethod
    def embedded(cls, path: Path, collection_name: str = "bpd_rag", create: bool = False) -> ChromaStore:
        """A store in a local folder; with create=False a missing folder is IndexMissingError."""
        import chromadb

        path = Path(path)
        if not create and not path.exists():
            raise IndexMissingError(f"No index found at {path}. Build it with: bpd-rag ingest")
        try:
            client = chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False))
        except Exception as exc:  # chromadb raises many types for a damaged folder
            raise IndexCorruptError(
                f"The index at {path} cannot be opened ({exc.__class__.__name__}: {exc}). "
                "Rebuild it with: bpd-rag ingest --rebuild"
            ) from exc
        return cls(client, collection_name, str(path))

    @classmethod
    def server(cls, url: str, collection_name: str = "bpd_rag") -> ChromaStore:
        """A store on a Chroma server (``chroma run``) at url."""
        import chromadb

        parsed = urlparse(url if "://" in url else f"http://{url}")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chromadb.Settings(anonymized_telemetry=False),
            )
        except Exception as exc:
            raise IndexMissingError(
                f"The Chroma server at {url} cannot be reached ({exc}). "
                "Start it (chroma run) or unset BPD_RAG_STORE__CHROMA_URL."
            ) from exc
        return cls(client, collection_name, url)

    def _get(self, create: bool) -> Any:
        if self._collection is not None:
            return self._collection
        try:
            if create:
                # embedding_function=None: vectors always come from our embedder; Chroma's default
                # function would download a model, which fails offline.
                self._collection = self._client.get_or_create_collection(
                    self.collection_name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
                )
            else:
                self._collection = self._client.get_collection(self.collection_name, embedding_function=None)
        except Exception as exc:
            if not create and ("does not exist" in str(exc) or exc.__class__.__name__ == "NotFoundError"):
                raise IndexMissingError(
                    f"The index at {self.location} has no collection '{self.collection_name}'. "
                    "Build it with: bpd-rag ingest"
                ) from exc
            raise IndexCorruptError(
                f"The index at {self.location} cannot be read ({exc.__class__.__name__}: {exc}). "
                "Rebuild it with: bpd-rag ingest --rebuild"
            ) from exc
        return self._collection

    def add(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        collection = self._get(create=True)
        for i in range(0, len(chunks), _BATCH):
            part = chunks[i : i + _BATCH]
            collection.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=[list(v) for v in vectors[i : i + _BATCH]],
                documents=[c.text for c in part],
                metadatas=[_chunk_metadata(c) for c in part],
            )

    def delete(self, chunk_ids: Sequence[str]) -> None:
        collection = self._get(create=True)
        for i in range(0, len(chunk_ids), _BATCH):
            collection.delete(ids=list(chunk_ids[i : i + _BATCH]))

    def query(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]:
        """Nearest chunk ids with cosine similarity, best first (all of them when there are fewer than n)."""
        collection = self._get(create=False)
        # No count() first: asked for more than it holds, Chroma returns what it has (nothing when empty),
        # and a count is one more call, a round trip to a Chroma server, on every question.
        result = collection.query(query_embeddings=[list(vector)], n_results=n, include=["distances"])
        return [(cid, 1.0 - float(d)) for cid, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def all_chunks(self) -> list[Chunk]:
        collection = self._get(create=False)
        chunks: list[Chunk] = []
        total = collection.count()
        for offset in range(0, total, _BATCH):
            page = collection.get(include=["documents", "metadatas"], limit=_BATCH, offset=offset)
            for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                chunks.append(_chunk_from_record(cid, text, meta))
        return chunks

    def read_manifest(self) -> Manifest | None:
        """The manifest of the live index, or None when nothing was ingested yet."""
        try:
            collection = self._get(create=False)
        except IndexMissingError:
            return None
        raw = (collection.metadata or {}).get(_MANIFEST_KEY)
        if not raw:
            return None
        try:
            return Manifest.from_json(raw)
        except (ValueError, TypeError) as exc:
            raise IndexCorruptError(
                f"The index manifest at {self.location} is damaged ({exc}). Rebuild it with: bpd-rag ingest --rebuild"
            ) from exc

    def write_manifest(self, manifest: Manifest) -> None:
        """Swap in a new manifest: one metadata write, so readers see the old or the new index, never half."""
        collection = self._get(create=True)
        collection.modify(metadata={_MANIFEST_KEY: manifest.to_json()})

    def close(self) -> None:
        """Release the client (an embedded one holds its folder open)."""
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
        self._collection = None

    def drop(self) -> None:
        """Delete the whole collection (for --rebuild)."""
        # A missing collection is what we want anyway.
        with contextlib.suppress(Exception):
            self._client.delete_collection(self.collection_name)
        self._collection = None


def release_embedded(path: Path) -> None:
    """Forget Chroma's in-process instance for a folder, so the next client there reads the files anew.

    Chroma shares one instance per folder within a process; after the folder is swapped (rebuild) that
    instance would keep reading the old files.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    for identifier in (str(path), str(Path(path).resolve())):
        system = SharedSystemClient._identifier_to_system.pop(identifier, None)
        SharedSystemClient._identifier_to_refcount.pop(identifier, None)
        if system is not None:
            system.stop()


def open_store(settings: StoreSettings, create: bool = False) -> ChromaStore:
    """The store the settings point at: a Chroma server if chroma_url is set, else the embedded folder."""
    if settings.chroma_url:
        return ChromaStore.server(settings.chroma_url, settings.collection)
    return ChromaStore.embedded(settings.path, settings.collection, create=create)


class MemoryStore:
    """A VectorStore in memory (exact cosine search): for tests and parameter sweeps, not for serving."""

    __test__ = False

    def __init__(self, location: str = "memory") -> None:
        self.location = location
        self._chunks: dict[str, Chunk] = {}
        self._vectors: dict[str, list[float]] = {}
        self._manifest: Manifest | None = None
        self.fail_after_chunks: int | None = None  # tests simulate a crash mid-write with this

    def add(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        for chunk, vector in zip(chunks, vectors, strict=True):
            if self.fail_after_chunks is not None:
                if self.fail_after_chunks <= 0:
                    raise RuntimeError("simulated crash during ingest")
                self.fail_after_chunks -= 1
            self._chunks[chunk.chunk_id] = chunk
            self._vectors[chunk.chunk_id] = list(vector)

    def delete(self, chunk_ids: Sequence[str]) -> None:
        for cid in chunk_ids:
            self._chunks.pop(cid, None)
            self._vectors.pop(cid, None)

    def query(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]:
        import numpy as np

        if not self._vectors:
            return []
        ids = list(self._vectors)
        sims = np.asarray([self._vectors[i] for i in ids]) @ np.asarray(vector)
        order = np.argsort(-sims)[:n]
        return [(ids[i], float(sims[i])) for i in order]

    def all_chunks(self) -> list[Chunk]:
        return list(self._chunks.values())

    def read_manifest(self) -> Manifest | None:
        return self._manifest

    def write_manifest(self, manifest: Manifest) -> None:
        self._manifest = Manifest.from_json(manifest.to_json())

    def drop(self) -> None:
        self._chunks.clear()
        self._vectors.clear()
        self._manifest = None
