"""A running server follows ingests done by another process, and a failing store is a 503 that says what to do."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.api.service import unavailable
from bpd_rag.embeddings import HashEmbedder
from bpd_rag.errors import BpdRagError, StoreUnavailableError
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings
from bpd_rag.store import Manifest, MemoryStore
from bpd_rag.types import Chunk
from tests.chroma_server import free_port, running_chroma
from tests.conftest import make_settings, write_doc

PILOT = "The pilot trial gave ketamine infusions to adults with borderline personality disorder over two weeks."
BLADDER = "Frequent recreational use can damage the bladder: cystitis, urgency and painful urination were reported."
NASAL = "Esketamine is a nasal spray; the dose is given in the clinic and patients are watched for two hours."
ORAL = "Oral lozenges dissolve under the tongue; absorption through the mouth lining is slower and uneven."

BLADDER_QUESTION = "bladder cystitis urgency painful urination"
NASAL_QUESTION = "esketamine nasal spray watched two hours"
ORAL_QUESTION = "oral lozenges dissolve under the tongue"


def _corpus(folder: Path, docs: dict[str, str]) -> Path:
    """Make the corpus folder hold exactly these documents (doc id -> text)."""
    folder.mkdir(exist_ok=True)
    for path in folder.glob("*.md"):
        if path.stem not in docs:
            path.unlink()
    for doc_id, text in docs.items():
        write_doc(folder, doc_id, text, title=doc_id.capitalize())
    return folder


def _settings(tmp_path: Path, corpus: Path, **store: object) -> Settings:
    """Test settings (conftest.make_settings), store settings on top, feedback kept in tmp_path."""
    settings = make_settings(tmp_path, corpus)
    return settings.model_copy(
        update={
            "store": settings.store.model_copy(update=store),
            "api": settings.api.model_copy(update={"feedback_db": tmp_path / "feedback.sqlite3"}),
        }
    )


def _found(pipeline: Pipeline, question: str) -> list[str]:
    """The documents of the passages retrieved for a question, best first."""
    return [p.chunk.doc_id for p in pipeline.retriever.retrieve(question)]


def _eventually(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Poll until check() holds (the watcher looks every reload_interval_s, 2 s by default)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:g} s: {what}")
        time.sleep(0.1)


def _never_quotes(pipeline: Pipeline, doc_id: str, questions: Sequence[str]) -> None:
    for question in questions:
        assert doc_id not in _found(pipeline, question), question
        assert doc_id not in {c.doc_id for c in pipeline.ask(question).citations}, question


# --- embedded index ---------------------------------------------------------------------------------------


def test_a_server_follows_ingests_and_rebuilds_by_another_pipeline(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    settings = make_settings(tmp_path, corpus)
    Pipeline(settings, HashEmbedder()).ingest()
    server = Pipeline(settings, HashEmbedder())  # as `bpd-rag serve` holds it, loaded once
    assert _found(server, BLADDER_QUESTION)[0] == "bladder"

    # `bpd-rag ingest` in another terminal: one document removed, one added.
    other = Pipeline(settings, HashEmbedder())
    _corpus(corpus, {"pilot": PILOT, "nasal": NASAL})
    report = other.ingest()
    assert (report.removed, report.added) == (["bladder"], ["nasal"])
    _eventually(lambda: _found(server, NASAL_QUESTION)[0] == "nasal", "the new document is found")
    _never_quotes(server, "bladder", [BLADDER_QUESTION, NASAL_QUESTION, "What did the pilot trial find?"])

    # `bpd-rag ingest --rebuild`: a fresh folder is built beside the live one and swapped in.
    folder = Path(settings.store.path)
    before = folder.stat().st_ino
    _corpus(corpus, {"pilot": PILOT, "oral": ORAL})
    other.ingest(rebuild=True)
    assert folder.stat().st_ino != before  # the folder was replaced, not written in place
    _eventually(lambda: _found(server, ORAL_QUESTION)[0] == "oral", "the rebuilt index is found")
    _never_quotes(server, "nasal", [NASAL_QUESTION, ORAL_QUESTION])
    _never_quotes(server, "bladder", [BLADDER_QUESTION])


def test_an_ingest_that_changes_nothing_keeps_the_loaded_index(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    settings = _settings(tmp_path, corpus, reload_interval_s=0.1)
    Pipeline(settings, HashEmbedder()).ingest()
    server = Pipeline(settings, HashEmbedder())
    loaded = server.retriever.snapshot()
    assert Pipeline(settings, HashEmbedder()).ingest().chunks_written == 0
    time.sleep(1.0)  # ten looks at the index: reading it (which touches Chroma's files) is no change either
    assert server.retriever.snapshot() is loaded


class CountingStore(MemoryStore):
    """A MemoryStore that remembers which threads read all its chunks (what loading an index does)."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__(reload_interval_s=0.1)
        self.loaded_on: list[str] = []

    def all_chunks(self) -> list[Chunk]:
        self.loaded_on.append(threading.current_thread().name)
        return super().all_chunks()


def test_the_new_index_is_loaded_by_the_watcher_not_by_a_request(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    store = CountingStore()
    server = Pipeline(make_settings(tmp_path, corpus), HashEmbedder(), store=store)
    server.ingest()
    assert _found(server, BLADDER_QUESTION)[0] == "bladder"

    _corpus(corpus, {"pilot": PILOT, "nasal": NASAL})
    Pipeline(make_settings(tmp_path, corpus), HashEmbedder(), store=store).ingest()  # reads the chunks too
    requests_loaded = store.loaded_on.count(threading.current_thread().name)
    _eventually(lambda: _found(server, NASAL_QUESTION)[0] == "nasal", "the new document is found")
    assert store.loaded_on.count(threading.current_thread().name) == requests_loaded
    assert "bpd-rag-index-watcher" in store.loaded_on


# --- a store that fails -----------------------------------------------------------------------------------


class BrokenStore:
    """Every call fails the way a Chroma server that went away does."""

    location = "http://127.0.0.1:9"

    def _fail(self, *args: object) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    add = delete = query = all_chunks = read_manifest = write_manifest = drop = _fail


def test_a_store_that_fails_is_a_503_saying_what_to_do(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT})
    settings = _settings(tmp_path, corpus)
    pipeline = Pipeline(settings, HashEmbedder(), store=BrokenStore())  # type: ignore[arg-type]
    with pytest.raises(BpdRagError) as caught:
        pipeline.ask("What did the pilot trial find?")
    error = unavailable(caught.value)
    assert error.status == 503 and "is it running?" in error.message

    with TestClient(create_app(settings, pipeline_factory=lambda _: pipeline)) as client:
        for response in (client.post("/api/chat", json={"message": "What dose?"}), client.get("/readyz")):
            assert response.status_code == 503
            assert "is it running?" in response.json()["error"]["message"]


def test_a_chroma_server_that_is_not_running_is_a_503_with_the_command_to_start_it(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT})
    url = f"http://127.0.0.1:{free_port()}"
    settings = _settings(tmp_path, corpus, chroma_url=url)
    with TestClient(create_app(settings, pipeline_factory=lambda s: Pipeline(s, HashEmbedder()))) as client:
        for response in (client.post("/api/chat", json={"message": "What dose?"}), client.get("/readyz")):
            assert response.status_code == 503
            message = response.json()["error"]["message"]
            assert f"Is the Chroma server at {url} running?" in message and "chroma run --path" in message


class FlakyStore(MemoryStore):
    """A MemoryStore whose calls fail while `down` is set, as a Chroma server that stops and comes back."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__(reload_interval_s=0.1)
        self.down = False
        self.queries = 0

    def _check(self) -> None:
        if self.down:
            raise TimeoutError("timed out")

    def query(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]:
        self.queries += 1
        self._check()
        return super().query(vector, n)

    def version(self) -> str:
        self._check()
        return super().version()

    def read_manifest(self) -> Manifest | None:
        self._check()
        return super().read_manifest()


def test_a_store_that_stops_answering_fails_fast_and_recovers(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    store = FlakyStore()
    pipeline = Pipeline(make_settings(tmp_path, corpus), HashEmbedder(), store=store)
    pipeline.ingest()
    assert _found(pipeline, BLADDER_QUESTION)[0] == "bladder"

    store.down = True
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        pipeline.retriever.retrieve(BLADDER_QUESTION)
    asked = store.queries
    with pytest.raises(StoreUnavailableError):  # the next request does not wait for the store again
        pipeline.ask(BLADDER_QUESTION)
    assert store.queries == asked
    with pytest.raises(StoreUnavailableError):
        pipeline.retriever.check()  # what /readyz asks

    store.down = False
    _eventually(lambda: _answers(pipeline, BLADDER_QUESTION), "answers again once the store is back")
    assert pipeline.retriever.check() > 0


def _answers(pipeline: Pipeline, question: str) -> bool:
    try:
        return _found(pipeline, question)[0] == "bladder"
    except StoreUnavailableError:
        return False


def test_readyz_says_when_the_index_folder_is_gone_or_damaged(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT})
    settings = _settings(tmp_path, corpus)
    Pipeline(settings, HashEmbedder()).ingest()
    folder = Path(settings.store.path)
    with TestClient(create_app(settings, pipeline_factory=lambda s: Pipeline(s, HashEmbedder()))) as client:
        assert client.get("/readyz").json()["chunks"] == 1

        (folder / "chroma.sqlite3").write_bytes(b"not a database" * 100)
        damaged = client.get("/readyz")
        assert damaged.status_code == 503
        assert "Rebuild it with: bpd-rag ingest --rebuild" in damaged.json()["error"]["message"]

        shutil.rmtree(folder)
        gone = client.get("/readyz")
        assert gone.status_code == 503
        assert gone.json()["error"]["message"] == f"No index found at {folder}. Build it with: bpd-rag ingest"


# --- a real Chroma server -----------------------------------------------------------------------------------


@pytest.fixture
def chroma_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `chroma run` on 127.0.0.1 that the test may pause (SIGSTOP), stopped by its PID."""
    with running_chroma(tmp_path / "chroma") as server:
        yield server


@pytest.mark.chroma_server
def test_a_server_follows_ingests_on_a_chroma_server(
    tmp_path: Path, chroma_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, _proc = chroma_process
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    settings = _settings(tmp_path, corpus, chroma_url=url)
    Pipeline(settings, HashEmbedder()).ingest()
    server = Pipeline(settings, HashEmbedder())
    assert _found(server, BLADDER_QUESTION)[0] == "bladder"

    other = Pipeline(settings, HashEmbedder())
    _corpus(corpus, {"pilot": PILOT, "nasal": NASAL})
    other.ingest()
    _eventually(lambda: _found(server, NASAL_QUESTION)[0] == "nasal", "the new document is found")
    _never_quotes(server, "bladder", [BLADDER_QUESTION, NASAL_QUESTION])

    _corpus(corpus, {"pilot": PILOT, "oral": ORAL})
    other.ingest(rebuild=True)  # on a server: the collection is dropped and made anew
    _eventually(lambda: _answers_with(server, ORAL_QUESTION, "oral"), "the rebuilt collection is found")
    _never_quotes(server, "nasal", [NASAL_QUESTION, ORAL_QUESTION])


def _answers_with(pipeline: Pipeline, question: str, doc_id: str) -> bool:
    try:
        return _found(pipeline, question)[0] == doc_id
    except BpdRagError:  # the old collection is gone until the new snapshot is in
        return False


@pytest.mark.chroma_server
def test_a_hung_chroma_server_is_a_503_after_the_timeout_and_recovers(
    tmp_path: Path, chroma_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = chroma_process
    corpus = _corpus(tmp_path / "corpus", {"pilot": PILOT, "bladder": BLADDER})
    settings = _settings(tmp_path, corpus, chroma_url=url, timeout_s=1.0, reload_interval_s=0.2)
    Pipeline(settings, HashEmbedder()).ingest()
    server = Pipeline(settings, HashEmbedder())
    assert _found(server, BLADDER_QUESTION)[0] == "bladder"

    os.kill(proc.pid, signal.SIGSTOP)  # the process is there and accepts connections, but never answers
    try:
        outcome: list[BaseException] = []

        def ask() -> None:
            try:
                server.retriever.retrieve(BLADDER_QUESTION)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        worker.join(30)  # not a speed check: without a timeout the call would wait for as long as the server
        assert not worker.is_alive(), "the request is still waiting for the hung server"
        assert isinstance(outcome[0], StoreUnavailableError)
        assert f"Is the Chroma server at {url} running? It did not answer within 1 s" in str(outcome[0])
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _eventually(lambda: _answers_with(server, BLADDER_QUESTION, "bladder"), "answers again once the server is back")
