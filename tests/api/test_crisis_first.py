"""Crisis first: triage runs on its own threads, before the rate limit and the worker pool; a crisis reply never
waits for retrieval, the index or the LLM."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.pipeline import Pipeline, build_pipeline
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Question, SafetyDecision
from tests.api.conftest import api_settings

CRISIS_MESSAGE = "I want to kill myself tonight"
# Starlette's worker pool holds 40 threads; more ordinary requests than that wait in its queue.
ORDINARY_REQUESTS = 48


class Hanging:
    """Stands in for an answer that never comes (a hung LLM endpoint or Chroma server): blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(self, question: Question, decision: SafetyDecision) -> Answer:
        with self._lock:
            self.waiting += 1
        self.release.wait(timeout=60)
        return Answer(kind="no_answer", answerer="hanging")


def test_a_crisis_reply_does_not_wait_for_a_saturated_pool_and_a_hanging_answer(
    tmp_path: Path, hash_index: Path
) -> None:
    hanging = Hanging()

    def factory(settings: Settings) -> Pipeline:
        pipeline = build_pipeline(settings)
        pipeline._answer = hanging  # type: ignore[method-assign]  # every ordinary question hangs
        return pipeline

    app = create_app(api_settings(tmp_path, hash_index, rate_limit_per_minute=1000), pipeline_factory=factory)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=ORDINARY_REQUESTS) as pool:
        ordinary = [
            pool.submit(client.post, "/api/chat", json={"message": f"what did the trial find about week {n}?"})
            for n in range(ORDINARY_REQUESTS)
        ]
        deadline = time.monotonic() + 30
        while hanging.waiting < 40 and time.monotonic() < deadline:  # the worker pool is full
            time.sleep(0.05)
        assert hanging.waiting >= 40
        started = time.perf_counter()
        reply = client.post("/api/chat", json={"message": CRISIS_MESSAGE})
        waited = time.perf_counter() - started
        hanging.release.set()
        assert all(f.result(timeout=60).status_code == 200 for f in ordinary)
    assert reply.status_code == 200 and reply.json()["kind"] == "crisis"
    assert "988" in reply.json()["answer"]
    assert waited < 1.0, f"the crisis reply waited {waited:.2f} s"


def test_a_rate_limited_client_still_gets_the_crisis_reply(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index, rate_limit_per_minute=1))
    with TestClient(app) as client:
        assert client.post("/api/chat", json={"message": "what is bpd"}).status_code == 200
        assert client.post("/api/chat", json={"message": "what is bpd"}).status_code == 429
        crisis = client.post("/api/chat", json={"message": CRISIS_MESSAGE})
        assert crisis.status_code == 200 and crisis.json()["kind"] == "crisis"
        openai = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": CRISIS_MESSAGE}]})
        assert openai.status_code == 200 and "988" in openai.json()["choices"][0]["message"]["content"]


def test_a_lone_surrogate_in_a_crisis_message_still_gets_the_crisis_reply(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index))
    with TestClient(app) as client:
        body = '{"message": "I want to kill myself tonight \\ud800"}'  # valid JSON, a string UTF-8 cannot hold
        reply = client.post("/api/chat", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["kind"] == "crisis"


def test_the_conversation_id_keeps_risk_when_the_history_is_dropped(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index))
    with TestClient(app) as client:
        first = client.post("/api/chat", json={"message": CRISIS_MESSAGE, "conversation_id": "tab-1"})
        assert first.json()["kind"] == "crisis"
        # The page was reloaded and sent no history: the server still knows this conversation raised risk.
        later = client.post("/api/chat", json={"message": "what dose did the trial use?", "conversation_id": "tab-1"})
        fresh = client.post("/api/chat", json={"message": "what dose did the trial use?", "conversation_id": "tab-2"})
    assert later.json()["risk"] in ("concern", "crisis") and later.json()["resources"]
    assert fresh.json()["risk"] == "none"


def test_the_openai_route_keeps_risk_by_its_user_field_or_header(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index))
    with TestClient(app) as client:

        def ask(message: str, user: str | None = None, header: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {"messages": [{"role": "user", "content": message}]}
            if user is not None:
                body["user"] = user
            headers = {"X-Conversation-Id": header} if header is not None else {}
            reply: dict[str, Any] = client.post("/v1/chat/completions", json=body, headers=headers).json()["bpd_rag"]
            return reply

        assert ask(CRISIS_MESSAGE, user="u-1")["kind"] == "crisis"
        assert ask(CRISIS_MESSAGE, header="h-1")["kind"] == "crisis"
        # A front end that sends only the last message: the server still knows these conversations.
        for later in (
            ask("what dose did the trial use?", user="u-1"),
            ask("what dose did the trial use?", header="h-1"),
        ):
            assert later["risk"] in ("concern", "crisis") and later["resources"]
        assert ask("what dose did the trial use?", user="u-2")["risk"] == "none"
