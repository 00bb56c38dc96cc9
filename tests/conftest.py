"""Shared test setup."""

from __future__ import annotations

import pytest

from bpd_rag import chat_models


@pytest.fixture(autouse=True)
def _block_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a model endpoint unless it sets llm.ALLOW_MODEL_REQUESTS back to True itself."""
    monkeypatch.setattr(chat_models, "ALLOW_MODEL_REQUESTS", False)


# --- corpus, settings and pipelines -------------------------------------------------------------

import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from bpd_rag.embeddings import HashEmbedder, SentenceTransformerEmbedder  # noqa: E402
from bpd_rag.pipeline import Pipeline  # noqa: E402
from bpd_rag.settings import Settings  # noqa: E402
from bpd_rag.types import Message  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"


def write_doc(folder: Path, doc_id: str, body: str, title: str = "A test document", source_type: str = "news") -> Path:
    """Write a Markdown corpus file with front matter."""
    path = folder / f"{doc_id}.md"
    path.write_text(f'---\ntitle: "{title}"\nsource_type: "{source_type}"\n---\n\n{body}\n', encoding="utf-8")
    return path


def exchange(question: str, answer: str) -> list[Message]:
    """A conversation of one question and its answer, as a client sends it before the next message."""
    return [Message(role="user", content=question), Message(role="assistant", content=answer)]


def make_settings(tmp_path: Path, corpus_dir: Path, backend: str = "hash") -> Settings:
    """Settings for a test: its own corpus and index folder, nothing read from the environment's .env."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings init-only argument
        corpus_dir=corpus_dir,
        store={"path": tmp_path / "index"},
        embedding={"backend": backend},
    )


@pytest.fixture
def tmp_corpus(tmp_path: Path) -> Path:
    """A copy of the real corpus that a test may change."""
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


@pytest.fixture
def hash_pipeline(tmp_path: Path, tmp_corpus: Path) -> Pipeline:
    """A pipeline over a copy of the corpus with the hash embedder and an embedded Chroma index (not ingested)."""
    return Pipeline(make_settings(tmp_path, tmp_corpus), HashEmbedder())


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    """The packaged MiniLM model (loaded once per test session)."""
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def real_pipeline(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder
) -> Iterator[Pipeline]:
    """The real corpus, embedder and embedded Chroma index: what a user of the CLI meets."""
    tmp = tmp_path_factory.mktemp("real")
    pipeline = Pipeline(make_settings(tmp, CORPUS, backend="sentence-transformers"), real_embedder)
    pipeline.ingest()
    yield pipeline


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()
