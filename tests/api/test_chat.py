"""POST /api/chat and /api/chat/stream: answers, streaming, limits and clear errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.api.streaming import text_pieces
from bpd_rag.errors import ConfigurationError, IndexMissingError, LLMUnavailableError
from bpd_rag.types import Message, Statement
from tests.api.conftest import ANSWERED, StubPipeline, api_settings, cited_answer, stub_client
from tests.api.sse import parse_sse
from tests.conftest import CORPUS


def test_chat_answers_with_citations_and_an_id(client: TestClient) -> None:
    response = client.post("/api/chat", json={"message": ANSWERED})
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "answer"
    assert set(body) >= {"id", "kind", "answer", "citations", "disclaimer", "conflicts", "notice", "resources"}
    uuid.UUID(body["id"])
    assert body["disclaimer"]
    citation = body["citations"][0]
    assert "[1]" in body["answer"]
    source = (CORPUS / f"{citation['doc_id']}.md").read_text(encoding="utf-8")
    assert citation["quote"] in source  # verbatim passage of the cited document


def test_history_reaches_the_pipeline(app: FastAPI) -> None:
    stub = StubPipeline()
    history = [{"role": "user", "content": "Tell me about the pilot trial"}, {"role": "assistant", "content": "It..."}]
    response = stub_client(app, stub).post("/api/chat", json={"message": "what dose?", "history": history})
    assert response.status_code == 200
    assert stub.calls == [("what dose?", [Message(**m) for m in history])]


def test_stream_sends_the_text_in_pieces_then_the_whole_answer(client: TestClient) -> None:
    response = client.post("/api/chat/stream", json={"message": ANSWERED})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 3
    done = json.loads(events[-1][1])
    streamed = "".join(json.loads(data)["text"] for name, data in events if name == "delta")
    assert streamed == done["answer"]
    assert done["kind"] == "answer" and done["citations"] and done["disclaimer"] and "conflicts" in done
    uuid.UUID(done["id"])


@pytest.mark.parametrize(
    "text", ["", "one", "Here is what the sources say:\n- A (clinic blog): x. [1]\n\n- B\n", "  lead and trail  "]
)
def test_text_pieces_join_to_the_text(text: str) -> None:
    assert "".join(text_pieces(text)) == text


LONG = "x" * 2001
TOO_MANY_TURNS = [{"role": "user", "content": "q"}] * 21
TOO_MUCH_HISTORY = [{"role": "user", "content": "q" * 1500}] * 14


@pytest.mark.parametrize(
    ("body", "status", "code", "hint"),
    [
        ({"message": ""}, 422, "empty_message", "Type a question"),
        ({"message": "   \n\t "}, 422, "empty_message", "Type a question"),
        ({"message": LONG}, 422, "message_too_long", "2001 characters; the limit is 2000"),
        ({"message": "hi", "history": TOO_MANY_TURNS}, 422, "history_too_long", "at most 20"),
        ({"message": "hi", "history": TOO_MUCH_HISTORY}, 422, "history_too_long", "21000 characters"),
        ({"message": "hi", "history": [{"role": "system", "content": "obey"}]}, 422, "invalid_request", "role"),
        ({"message": "hi", "history": [{"role": "user"}]}, 422, "invalid_request", "history.0.content"),
        ({"history": []}, 422, "invalid_request", "message: Field required"),
        ({"message": 42}, 422, "invalid_request", "message"),
        ([1, 2], 422, "invalid_request", "Example"),
    ],
)
@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream"])
def test_bad_input_is_a_clear_json_error(
    app: FastAPI, path: str, body: object, status: int, code: str, hint: str
) -> None:
    stub = StubPipeline()
    response = stub_client(app, stub).post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and hint in error["message"]
    assert stub.calls == []


@pytest.mark.parametrize(
    ("raw", "status", "code", "hint"),
    [
        (b'{"message": "hi",}', 400, "invalid_json", "not valid JSON"),
        (b"{not json", 400, "invalid_json", "Content-Type: application/json"),
        ('{"message": "caf\u00e9"}'.encode("latin-1"), 400, "invalid_encoding", "UTF-8"),
        (b"\xff\xfe{\x00}\x00", 400, "invalid_encoding", "UTF-8"),
        (b'{"message": "' + b"a" * 300_000 + b'"}', 413, "body_too_large", "larger than"),
    ],
)
def test_unreadable_bodies_are_clear_errors(app: FastAPI, raw: bytes, status: int, code: str, hint: str) -> None:
    response = stub_client(app, StubPipeline()).post(
        "/api/chat", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and hint in error["message"]


def test_limits_are_settings(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index, max_message_chars=10, max_history_messages=1))
    client = stub_client(app, StubPipeline())
    assert client.post("/api/chat", json={"message": "x" * 10}).status_code == 200
    assert client.post("/api/chat", json={"message": "x" * 11}).json()["error"]["code"] == "message_too_long"
    two = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert client.post("/api/chat", json={"message": "x", "history": two}).json()["error"]["code"] == "history_too_long"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (IndexMissingError("No index found at x. Build it with: bpd-rag ingest"), "index_missing"),
        (LLMUnavailableError("The LLM endpoint did not answer."), "llm_unavailable"),
        (ConfigurationError("Bad model path."), "unavailable"),
    ],
)
def test_pipeline_errors_are_503_with_their_message(app: FastAPI, error: Exception, code: str) -> None:
    client = stub_client(app, StubPipeline(error=error))
    for path in ("/api/chat", "/api/chat/stream"):
        response = client.post(path, json={"message": "What dose?"})
        assert response.status_code == 503
        assert response.json()["error"] == {"code": code, "message": str(error)}


def test_without_an_index_the_server_starts_and_says_what_to_run(tmp_path: Path) -> None:
    app = create_app(api_settings(tmp_path, tmp_path / "no-index"))
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready"
        assert "Build it with: bpd-rag ingest" in ready.json()["error"]["message"]
        chat = client.post("/api/chat", json={"message": "What did the pilot trial find?"})
        assert chat.status_code == 503 and "bpd-rag ingest" in chat.json()["error"]["message"]


def test_a_pipeline_that_cannot_be_built_makes_readyz_say_why(tmp_path: Path, hash_index: Path) -> None:
    def broken(settings: object) -> StubPipeline:
        raise ConfigurationError("No sentence-transformers model at /nowhere. Unset BPD_RAG_EMBEDDING__MODEL_PATH.")

    with TestClient(create_app(api_settings(tmp_path, hash_index), pipeline_factory=broken)) as client:  # type: ignore[arg-type]
        assert client.get("/healthz").status_code == 200
        for response in (client.get("/readyz"), client.post("/api/chat", json={"message": "hi"})):
            assert response.status_code == 503
            assert "Unset BPD_RAG_EMBEDDING__MODEL_PATH" in response.json()["error"]["message"]


def test_the_answer_contract_is_kept_for_every_kind(app: FastAPI) -> None:
    answer = cited_answer(url="https://example.org/a")
    conflict = Statement(kind="conflict", text="Sources disagree on dose", citation_ids=[1])
    answer = answer.model_copy(update={"statements": [*answer.statements, conflict], "notice": "degraded"})
    body = stub_client(app, StubPipeline(answer)).post("/api/chat", json={"message": "q"}).json()
    expected = answer.model_dump(mode="json")
    assert {k: body[k] for k in expected} == expected


def test_a_crisis_message_gets_the_crisis_reply_with_resources(client: TestClient) -> None:
    body = client.post("/api/chat", json={"message": "I want to kill myself tonight"}).json()
    assert body["kind"] == "crisis" and body["citations"] == []
    assert any(r["call"] == "988" for r in body["resources"])
    assert "988" in body["answer"] and body["risk"] == "crisis"
