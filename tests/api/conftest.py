"""Fixtures of the API tests: a hash-embedder index built once, settings, apps, stub pipelines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.api.deps import get_pipeline
from bpd_rag.embeddings import HashEmbedder
from bpd_rag.pipeline import Pipeline
from bpd_rag.prompts import default_prompts_dir, load_crisis_texts
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Citation, Message, SafetyDecision, Statement
from tests.conftest import CORPUS, make_settings

# Asked of the hash-embedder index, this question gets an answer with a citation.
ANSWERED = "bladder problems incontinence urinating"

US_RESOURCES = load_crisis_texts(default_prompts_dir(), "US").language("en").resources
CRISIS_RESOURCES = [r.text for r in US_RESOURCES]
CRISIS = Answer(
    kind="crisis",
    statements=[
        Statement(kind="safety", text="I'm really sorry you're going through this. You matter.", resources=True),
        Statement(kind="safety", text="If you are a patient of the clinic, please also tell your care team."),
    ],
    resources=list(US_RESOURCES),
    risk="crisis",
    answerer="safety",
)


def cited_answer(text: str = "Ketamine was given at 0.5 mg/kg.", **citation: Any) -> Answer:
    """An answer with one plain statement citing one quote (fields of the citation may be replaced)."""
    fields: dict[str, Any] = {
        "id": 1,
        "doc_id": "pip-pilot-rct-blog",
        "chunk_id": "pip-pilot-rct-blog::x::0001",
        "title": "Ketamine for Borderline Personality Disorder",
        "source_type": "clinic_blog",
        "url": None,
        "quote": "a single dose of ketamine (0.5 mg/kg intravenously over 40 minutes)",
        "start": 10,
    }
    fields.update(citation)
    return Answer(
        kind="answer",
        statements=[Statement(kind="plain", text=text, citation_ids=[1], lead=True)],
        citations=[Citation(**fields)],
        disclaimer="Not medical advice.",
    )


class StubPipeline:
    """Answers every question with `answer` (or raises `error`) and remembers what it was asked."""

    def __init__(self, answer: Answer | None = None, error: Exception | None = None) -> None:
        self.answer = answer or cited_answer()
        self.error = error
        self.calls: list[tuple[str, list[Message]]] = []

    def ask(self, message: str, history: Sequence[Message] = (), conversation: object = None) -> Answer:
        return self.reply(message, history, self.assess(message, history, conversation))

    def assess(self, message: str, history: Sequence[Message] = (), conversation: object = None) -> SafetyDecision:
        self.calls.append((message, list(history)))
        crisis = self.answer.kind == "crisis"
        return SafetyDecision(action="crisis", risk="crisis") if crisis else SafetyDecision()

    def reply(self, message: str, history: Sequence[Message], decision: SafetyDecision) -> Answer:
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture(scope="session")
def hash_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the real corpus built once with the hash embedder (read-only for the tests)."""
    tmp = tmp_path_factory.mktemp("api-index")
    Pipeline(make_settings(tmp, CORPUS), HashEmbedder()).ingest()
    return tmp / "index"


def api_settings(tmp_path: Path, index: Path, **api: Any) -> Settings:
    """Settings over the hash index, with a feedback database in tmp_path and API settings on top."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings init-only argument
        corpus_dir=CORPUS,
        store={"path": index},
        embedding={"backend": "hash"},
        api={"feedback_db": tmp_path / "feedback.sqlite3", **api},
    )


@pytest.fixture
def settings(tmp_path: Path, hash_index: Path) -> Settings:
    return api_settings(tmp_path, hash_index)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def stub_client(app: FastAPI, stub: StubPipeline) -> TestClient:
    """A client of the app with its pipeline replaced by the stub."""
    app.dependency_overrides[get_pipeline] = lambda: stub
    return TestClient(app)
