"""One contract over every store: memory, embedded Chroma, and a real `chroma run` server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpd_rag.embeddings import HashEmbedder
from bpd_rag.errors import IndexMissingError, StoreUnavailableError
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings
from bpd_rag.store import ChromaStore, LiveStore, Manifest, MemoryStore, VectorStore
from bpd_rag.types import Chunk
from tests.chroma_server import free_port, running_chroma


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server on 127.0.0.1, started here and stopped by its PID."""
    with running_chroma(tmp_path_factory.mktemp("chroma-server")) as (url, _proc):
        yield url


@pytest.fixture(params=["memory", "embedded", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "embedded":
        return ChromaStore.embedded(tmp_path / "db", f"contract-{tmp_path.name[-20:]}", create=True)
    url = request.getfixturevalue("chroma_server")
    return ChromaStore.server(url, f"contract-{tmp_path.name[-20:]}".replace("_", "-"))


def _chunk(i: int, doc: str = "d", text: str | None = None) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}::h::{i}",
        doc_id=doc,
        index=i,
        text=text or f"text {i}",
        start=i,
        end=i + 1,
        title="T",
        source_type="news",
        doc_hash="h",
        heading=None if i else "Intro",
    )


def test_store_contract(store: VectorStore) -> None:
    assert store.read_manifest() is None
    embedder = HashEmbedder(dimension=32)
    chunks = [
        _chunk(0, text="ketamine infusion dose"),
        _chunk(1, text="bladder problems"),
        _chunk(2, doc="e", text="midazolam control"),
    ]
    store.add(chunks, embedder.embed_documents([c.text for c in chunks]))
    hits = store.query(embedder.embed_query("bladder problems"), 2)
    assert hits[0][0] == "d::h::1" and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 2
    stored = {c.chunk_id: c for c in store.all_chunks()}
    assert stored["d::h::0"] == chunks[0]  # every field survives the round trip (None stays None)
    assert stored["d::h::1"].heading is None and stored["d::h::0"].url is None
    store.add([chunks[1]], embedder.embed_documents([chunks[1].text]))  # re-adding replaces, never duplicates
    assert len(store.all_chunks()) == 3
    store.delete(["d::h::1"])
    assert {c.chunk_id for c in store.all_chunks()} == {"d::h::0", "e::h::2"}
    manifest = Manifest(embedder="hash:32", dimension=32, chunking={"max_tokens": 64}, docs={"d": "h", "e": "h"})
    store.write_manifest(manifest)
    assert store.read_manifest() == manifest
    store.drop()
    assert store.read_manifest() is None


@pytest.mark.chroma_server
def test_pipeline_against_a_chroma_server(chroma_server: str, tmp_corpus: Path, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        corpus_dir=tmp_corpus,
        embedding={"backend": "hash"},
        store={"chroma_url": chroma_server, "collection": "pipeline-test", "path": tmp_path / "unused"},
    )
    pipeline = Pipeline(settings, HashEmbedder())
    report = pipeline.ingest()
    assert len(report.added) == 5 and report.chunks_total > 0
    assert Pipeline(settings, HashEmbedder()).ingest().chunks_written == 0
    answer = Pipeline(settings, HashEmbedder()).ask("bladder problems incontinence")
    assert answer.citations and answer.citations[0].doc_id == "ketamine-bpd-pros-cons"
    assert not (tmp_path / "unused").exists()  # the embedded folder is not touched in server mode


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(IndexMissingError, match="chroma run"):
        ChromaStore.server(url).read_manifest()


def test_the_version_changes_with_the_manifest_not_with_reads(store: VectorStore) -> None:
    assert isinstance(store, LiveStore)
    embedder = HashEmbedder(dimension=32)
    chunks = [_chunk(0, text="ketamine infusion dose"), _chunk(1, text="bladder problems")]
    store.add(chunks, embedder.embed_documents([c.text for c in chunks]))
    store.write_manifest(Manifest(embedder="hash:32", dimension=32, docs={"d": "h"}))
    before = store.version()
    store.query(embedder.embed_query("bladder"), 2)
    store.all_chunks()
    store.reopened().read_manifest()
    assert store.version() == before  # reading (which touches Chroma's files) is no change
    store.add([_chunk(2, text="midazolam")], embedder.embed_documents(["midazolam"]))
    assert store.version() == before  # chunks of an unfinished ingest are no change either
    store.write_manifest(Manifest(embedder="hash:32", dimension=32, docs={"d": "h", "e": "h"}))
    assert store.version() != before


def test_an_embedded_store_reopened_sees_what_another_one_wrote(tmp_path: Path) -> None:
    reader = ChromaStore.embedded(tmp_path / "db", create=True)
    writer = ChromaStore.embedded(tmp_path / "db", create=True)  # as `bpd-rag ingest` in another process
    embedder = HashEmbedder(dimension=32)
    writer.add([_chunk(0, text="ketamine")], embedder.embed_documents(["ketamine"]))
    manifest = Manifest(embedder="hash:32", dimension=32, docs={"d": "h"})
    writer.write_manifest(manifest)
    assert reader.version() == writer.version()  # read from the folder, not from the reader's Chroma instance
    fresh = reader.reopened()
    assert fresh.read_manifest() == manifest
    assert [c.chunk_id for c in fresh.all_chunks()] == ["d::h::0"]
    reader.close()
    assert reader.read_manifest() == manifest  # a closed store opens again when used


def test_a_server_that_accepts_but_never_answers_is_a_clear_error_after_the_timeout() -> None:
    with socket.socket() as silent:  # connections are accepted by the kernel; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outcome: list[BaseException] = []

        def connect() -> None:
            try:
                ChromaStore.server(url, timeout_s=0.5).read_manifest()
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=connect, daemon=True)
        worker.start()
        worker.join(30)  # not a speed check: without a timeout the call would wait for as long as the server
        assert not worker.is_alive(), "still waiting for a server that never answers"
    assert isinstance(outcome[0], StoreUnavailableError)
    assert f"Is the Chroma server at {url} running? It did not answer within 0.5 s" in str(outcome[0])
    assert "chroma run --path" in str(outcome[0])
