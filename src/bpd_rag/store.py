"""Vector store: Chroma, embedded (PersistentClient) or a Chroma server, with embeddings always passed in."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from bpd_rag.errors import BpdRagError, IndexCorruptError, IndexMissingError, StoreUnavailableError
from bpd_rag.types import Chunk

if TYPE_CHECKING:
    from bpd_rag.settings import StoreSettings

log = logging.getLogger(__name__)

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


@runtime_checkable
class LiveStore(Protocol):
    """A store that another process may change while this one reads it (an ingest in another terminal)."""

    reload_interval_s: float  # how often a reader should look at version()

    def version(self) -> str:
        """A cheap mark of the live index: it changes when an ingest completes or the index is swapped."""
        ...

    def reopened(self) -> VectorStore:
        """A store that reads the index as it is now (the same store when it always does)."""
        ...


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
    """One Chroma collection; the client is embedded or remote, the code is the same.

    Every Chroma failure leaves as a BpdRagError whose message says what to do (the API answers 503 with it),
    and every call to a Chroma server gives up after timeout_s.
    """

    def __init__(
        self,
        client: Any,
        collection_name: str,
        location: str,
        *,
        folder: Path | None = None,
        system: Any = None,
        timeout_s: float = 10.0,
        reload_interval_s: float = 2.0,
    ) -> None:
        self._client = client
        self._system = system  # the Chroma instance this store owns (embedded): close() stops it
        self.collection_name = collection_name
        self.location = location
        self.folder = folder  # None: a Chroma server at location
        self.timeout_s = timeout_s
        self.reload_interval_s = reload_interval_s
        self._collection: Any = None
        self._lock = threading.Lock()

    @classmethod
    def embedded(
        cls,
        path: Path,
        collection_name: str = "bpd_rag",
        create: bool = False,
        *,
        timeout_s: float = 10.0,
        reload_interval_s: float = 2.0,
    ) -> ChromaStore:
        """A store in a local folder; with create=False a missing folder is IndexMissingError."""
        path = Path(path)
        if not create and not path.exists():
            raise IndexMissingError(f"No index found at {path}. Build it with: bpd-rag ingest")
        try:
            client, system = _private_client(path)
        except Exception as exc:  # chromadb raises many types for a damaged folder
            raise IndexCorruptError(
                f"The index at {path} cannot be opened ({exc.__class__.__name__}: {exc}). "
                "Rebuild it with: bpd-rag ingest --rebuild"
            ) from exc
        return cls(
            client,
            collection_name,
            str(path),
            folder=path,
            system=system,
            timeout_s=timeout_s,
            reload_interval_s=reload_interval_s,
        )

    @classmethod
    def server(
        cls, url: str, collection_name: str = "bpd_rag", *, timeout_s: float = 10.0, reload_interval_s: float = 2.0
    ) -> ChromaStore:
        """A store on a Chroma server (``chroma run``) at url; StoreUnavailableError when it does not answer."""
        client = _server_client(url, timeout_s)
        return cls(client, collection_name, url, timeout_s=timeout_s, reload_interval_s=reload_interval_s)

    def _connected(self) -> Any:
        """The client, opened again when the store was closed (closing frees memory, it never breaks the store)."""
        with self._lock:
            if self._client is None:
                if self.folder is None:
                    self._client = _server_client(self.location, self.timeout_s)
                elif not self.folder.exists():
                    raise IndexMissingError(f"No index found at {self.folder}. Build it with: bpd-rag ingest")
                else:
                    self._client, self._system = _private_client(self.folder)
            return self._client

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Chroma's (and httpx's) many exception types as the BpdRagError a user can act on."""
        try:
            yield
        except BpdRagError:
            raise
        except Exception as exc:
            self._collection = None  # fetched again next time: it may have been deleted and made anew
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> BpdRagError:
        detail = f"{exc.__class__.__name__}: {exc}"
        if _is_not_found(exc):
            return IndexMissingError(
                f"The index at {self.location} has no collection '{self.collection_name}'. "
                "Build it with: bpd-rag ingest"
            )
        if self.folder is not None:
            return IndexCorruptError(
                f"The index at {self.location} cannot be read ({detail}). Rebuild it with: bpd-rag ingest --rebuild"
            )
        if _is_connection_failure(exc):
            return StoreUnavailableError(_server_down(self.location, exc, self.timeout_s))
        return IndexCorruptError(
            f"The Chroma server at {self.location} could not read the index ({detail}). Check the server's log; "
            "if the index is damaged, rebuild it with: bpd-rag ingest --rebuild"
        )

    def _get(self, create: bool) -> Any:
        collection = self._collection
        if collection is not None:
            return collection
        with self._failures():
            client = self._connected()
            if create:
                # embedding_function=None: vectors always come from our embedder; Chroma's default
                # function would download a model, which fails offline.
                collection = client.get_or_create_collection(
                    self.collection_name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
                )
            else:
                collection = client.get_collection(self.collection_name, embedding_function=None)
        self._collection = collection
        return collection

    def _fresh(self) -> Any:
        """The collection as stored now, or None when there is none.

        Chroma's collection object keeps the metadata it was fetched with: the manifest of another process's
        ingest is only seen on a collection fetched again.
        """
        with self._failures():
            client = self._connected()
            try:
                collection = client.get_collection(self.collection_name, embedding_function=None)
            except Exception as exc:
                if _is_not_found(exc):
                    self._collection = None
                    return None
                raise
        self._collection = collection
        return collection

    def add(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        collection = self._get(create=True)
        with self._failures():
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
        with self._failures():
            for i in range(0, len(chunk_ids), _BATCH):
                collection.delete(ids=list(chunk_ids[i : i + _BATCH]))

    def query(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]:
        """Nearest chunk ids with cosine similarity, best first (all of them when there are fewer than n)."""
        collection = self._get(create=False)
        # No count() first: asked for more than it holds, Chroma returns what it has (nothing when empty),
        # and a count is one more call, a round trip to a Chroma server, on every question.
        with self._failures():
            result = collection.query(query_embeddings=[list(vector)], n_results=n, include=["distances"])
        return [(cid, 1.0 - float(d)) for cid, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def all_chunks(self) -> list[Chunk]:
        collection = self._get(create=False)
        with self._failures():
            for _attempt in range(_LISTING_ATTEMPTS):
                chunks: list[Chunk] = []
                total = collection.count()
                for offset in range(0, total, _BATCH):
                    page = collection.get(include=["documents", "metadatas"], limit=_BATCH, offset=offset)
                    for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                        chunks.append(_chunk_from_record(cid, text, meta))
                # Pages are read by offset: chunks deleted meanwhile (another process's ingest cleaning up on a
                # Chroma server) shift the pages and a live chunk could be skipped. Read again when the count moved.
                if collection.count() == total:
                    break
        return chunks

    def read_manifest(self) -> Manifest | None:
        """The manifest of the live index as stored now, or None when nothing was ingested yet."""
        collection = self._fresh()
        raw = (collection.metadata or {}).get(_MANIFEST_KEY) if collection is not None else None
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
        with self._failures():
            collection.modify(metadata={_MANIFEST_KEY: manifest.to_json()})

    def version(self) -> str:
        """A cheap mark of the live index: it changes when an ingest writes a manifest, a rebuild swaps the
        folder or the collection is made anew (embedded: read from the folder's files, no Chroma instance)."""
        if self.folder is not None:
            return _folder_version(self.folder, self.collection_name, self.timeout_s)
        collection = self._fresh()
        if collection is None:
            return "no collection"
        return f"{collection.id}|{(collection.metadata or {}).get(_MANIFEST_KEY, '')}"

    def reopened(self) -> ChromaStore:
        """A store reading the index as it is now.

        Embedded: a new Chroma instance on the folder (an instance never sees what was written after it started,
        by another process or another instance). A server answers with what it holds now: the same store.
        """
        if self.folder is None:
            return self
        return ChromaStore.embedded(
            self.folder, self.collection_name, timeout_s=self.timeout_s, reload_interval_s=self.reload_interval_s
        )

    def close(self) -> None:
        """Release the client (an embedded one holds its folder open); the store opens it again if used later."""
        with self._lock:
            client, system = self._client, self._system
            self._client = self._system = self._collection = None
        if system is not None:
            system.stop()  # our own instance (see _private_client): nobody else is using it
        elif client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def drop(self) -> None:
        """Delete the whole collection (for --rebuild)."""
        # A missing collection is what we want anyway.
        with contextlib.suppress(Exception):
            self._connected().delete_collection(self.collection_name)
        self._collection = None


# Attempts at a consistent listing of a collection that another process is cleaning up.
_LISTING_ATTEMPTS = 3
# Chroma keeps its instances per folder in a dict shared by all threads: one thread at a time changes it here.
_OPEN_LOCK = threading.Lock()
_VERSION_SQL = (
    "SELECT c.id, m.str_value FROM collections c "
    "LEFT JOIN collection_metadata m ON m.collection_id = c.id AND m.key = ? WHERE c.name = ? LIMIT 1"
)


def _private_client(path: Path) -> tuple[Any, Any]:
    """A PersistentClient on a Chroma instance of its own, and that instance (stopping it releases the folder).

    Chroma shares one instance per folder within a process, and an instance never sees what was written after
    it started. An instance of its own reads the folder as it is when the store opens, and stopping it cannot
    break a store someone else holds.
    """
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient as Shared

    key = str(path)
    with _OPEN_LOCK:
        shared = Shared._identifier_to_system.pop(key, None)
        shared_refs = Shared._identifier_to_refcount.pop(key, None)
        try:
            client = chromadb.PersistentClient(path=key, settings=chromadb.Settings(anonymized_telemetry=False))
            system = Shared._identifier_to_system[key]
        finally:
            Shared._identifier_to_system.pop(key, None)
            Shared._identifier_to_refcount.pop(key, None)
            if shared is not None:
                Shared._identifier_to_system[key] = shared
            if shared_refs is not None:
                Shared._identifier_to_refcount[key] = shared_refs
    return client, system


def _server_parts(url: str) -> tuple[str, str, int]:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    scheme = parsed.scheme or "http"
    return scheme, parsed.hostname or "127.0.0.1", parsed.port or (443 if scheme == "https" else 8000)


def _server_client(url: str, timeout_s: float) -> Any:
    """A client of the Chroma server at url whose every call gives up after timeout_s."""
    import chromadb
    import httpx

    scheme, host, port = _server_parts(url)
    try:
        # Chroma's HTTP client waits forever (httpx timeout=None) and already calls the server while it is
        # built: a heartbeat with our timeout first, so a hung server fails here instead of holding the caller.
        httpx.get(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/api/v2/heartbeat", timeout=timeout_s)
        client = chromadb.HttpClient(
            host=host, port=port, ssl=scheme == "https", settings=chromadb.Settings(anonymized_telemetry=False)
        )
    except Exception as exc:
        raise StoreUnavailableError(_server_down(url, exc, timeout_s)) from exc
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_s)
    else:  # a chromadb release that builds its HTTP client differently: calls may wait as long as the server does
        log.warning("cannot set a timeout on the Chroma client (chromadb %s)", chromadb.__version__)
    return client


def _server_down(url: str, exc: BaseException, timeout_s: float) -> str:
    import httpx

    _scheme, host, port = _server_parts(url)
    timed_out = any(isinstance(e, (httpx.TimeoutException, TimeoutError)) for e in _chain(exc))
    what = f"did not answer within {timeout_s:g} s" if timed_out else f"cannot be reached ({exc.__class__.__name__})"
    return (
        f"Is the Chroma server at {url} running? It {what}. Start it with: chroma run --path .bpd_rag/chroma-server "
        f"--host {host} --port {port}, or unset BPD_RAG_STORE__CHROMA_URL to use the embedded index."
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the ones it was raised from (Chroma wraps httpx's errors in its own)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


def _is_connection_failure(exc: BaseException) -> bool:
    import httpx

    return any(
        isinstance(e, (httpx.TransportError, OSError)) or "Could not connect to a Chroma server" in str(e)
        for e in _chain(exc)
    )


def _is_not_found(exc: BaseException) -> bool:
    return exc.__class__.__name__ == "NotFoundError" or "does not exist" in str(exc)


def _folder_version(folder: Path, collection_name: str, timeout_s: float) -> str:
    """Which folder holds the index (a rebuild swaps it) and the collection and manifest in its SQLite file.

    Read with SQLite itself, read-only: a Chroma instance would cost tens of milliseconds to open, and it
    writes to the folder's files as it opens, so file times say nothing.
    """
    try:
        place = folder.stat()
    except FileNotFoundError as exc:
        raise IndexMissingError(f"No index found at {folder}. Build it with: bpd-rag ingest") from exc
    database = (folder / "chroma.sqlite3").resolve()
    try:
        connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=timeout_s)
        try:
            row = connection.execute(_VERSION_SQL, (_MANIFEST_KEY, collection_name)).fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreUnavailableError(
                f"The index at {folder} stayed locked for {timeout_s:g} s (is an ingest writing to it?). "
                "Try again shortly."
            ) from exc
        row = _version_through_chroma(folder, collection_name)
    except sqlite3.Error:
        row = _version_through_chroma(folder, collection_name)
    mark = f"{row[0]}|{row[1] or ''}" if row else "no collection"
    return f"{place.st_dev}:{place.st_ino}|{mark}"


def _version_through_chroma(folder: Path, collection_name: str) -> tuple[str, str] | None:
    """The collection id and manifest read by a Chroma instance (when its SQLite tables are not what we know)."""
    probe = ChromaStore.embedded(folder, collection_name)
    try:
        collection = probe._fresh()
        if collection is None:
            return None
        return str(collection.id), str((collection.metadata or {}).get(_MANIFEST_KEY, ""))
    finally:
        probe.close()


def release_embedded(path: Path) -> None:
    """Forget Chroma's in-process instance for a folder, so the next client there reads the files anew.

    Chroma shares one instance per folder within a process; after the folder is swapped (rebuild) that
    instance would keep reading the old files. (ChromaStore opens instances of its own, which close() stops.)
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    with _OPEN_LOCK:
        for identifier in (str(path), str(Path(path).resolve())):
            system = SharedSystemClient._identifier_to_system.pop(identifier, None)
            SharedSystemClient._identifier_to_refcount.pop(identifier, None)
            if system is not None:
                system.stop()


def open_store(settings: StoreSettings, create: bool = False) -> ChromaStore:
    """The store the settings point at: a Chroma server if chroma_url is set, else the embedded folder."""
    if settings.chroma_url:
        return ChromaStore.server(
            settings.chroma_url,
            settings.collection,
            timeout_s=settings.timeout_s,
            reload_interval_s=settings.reload_interval_s,
        )
    return ChromaStore.embedded(
        settings.path,
        settings.collection,
        create=create,
        timeout_s=settings.timeout_s,
        reload_interval_s=settings.reload_interval_s,
    )


class MemoryStore:
    """A VectorStore in memory (exact cosine search): for tests and parameter sweeps, not for serving."""

    __test__ = False

    def __init__(self, location: str = "memory", reload_interval_s: float = 2.0) -> None:
        self.location = location
        self.reload_interval_s = reload_interval_s
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

    def version(self) -> str:
        return self._manifest.to_json() if self._manifest is not None else ""

    def reopened(self) -> MemoryStore:
        return self

    def drop(self) -> None:
        self._chunks.clear()
        self._vectors.clear()
        self._manifest = None
