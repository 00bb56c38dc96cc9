"""The one API test with the packaged MiniLM model: what a reader of the widget meets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.pipeline import Pipeline
from tests.api.sse import parse_sse
from tests.conftest import CORPUS


@pytest.mark.real_model
def test_a_question_is_answered_and_streamed_with_verbatim_sources(real_pipeline: Pipeline, tmp_path: Path) -> None:
    api = real_pipeline.settings.api.model_copy(update={"feedback_db": tmp_path / "f.sqlite3"})
    settings = real_pipeline.settings.model_copy(update={"api": api})
    with TestClient(create_app(settings, pipeline_factory=lambda _: real_pipeline)) as client:
        assert client.get("/readyz").json()["embedder"].startswith("sentence-transformers")
        question = {"message": "What dose of ketamine was used in the pilot trial?"}
        body = client.post("/api/chat", json=question).json()
        assert body["kind"] == "answer" and "ketamine" in body["answer"].lower() and body["citations"]
        for citation in body["citations"]:
            assert citation["quote"] in (CORPUS / f"{citation['doc_id']}.md").read_text(encoding="utf-8")
        events = parse_sse(client.post("/api/chat/stream", json=question).text)
        done = json.loads(events[-1][1])
        assert "".join(json.loads(d)["text"] for n, d in events if n == "delta") == done["answer"] == body["answer"]
