"""The LLM judge over a real OpenAI-compatible HTTP exchange (a tiny local server), and its guards."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bpd_rag import chat_models
from bpd_rag.errors import ConfigurationError, LLMUnavailableError
from bpd_rag.evaluation.gold import GoldItem
from bpd_rag.evaluation.scoring import ScoringContext, aggregate, score_item
from bpd_rag.evaluation.targets import Observation
from bpd_rag.judge import LLMJudge
from bpd_rag.settings import LLMSettings
from bpd_rag.types import Answer, Citation, Statement


class FakeChatServer:
    """Answers /v1/chat/completions with "yes" when the claim occurs in the passage, else "no"."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                user = body["messages"][-1]["content"]
                passage = user.split("Passage:\n", 1)[1].split("\n\nClaim:\n", 1)[0]
                claim = user.split("\n\nClaim:\n", 1)[1].split("\n\n", 1)[0]
                verdict = "Yes." if claim.rstrip(".") in passage else "No."
                data = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": verdict}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    server = FakeChatServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def allow_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_models, "ALLOW_MODEL_REQUESTS", True)


QUOTE = "Participants received a single dose of ketamine."


@pytest.mark.usefixtures("allow_requests")
def test_judge_asks_the_endpoint_and_reads_yes_or_no(chat_server: FakeChatServer) -> None:
    judge = LLMJudge(LLMSettings(base_url=chat_server.url, model="judge-model"))
    assert judge.support("Participants received a single dose of ketamine.", QUOTE) == 1.0
    assert judge.support("Participants received three doses.", QUOTE) == 0.0
    sent = chat_server.bodies[0]
    assert sent["model"] == "judge-model" and sent["temperature"] == 0.0
    assert sent["messages"][0]["role"] == "system" and QUOTE in sent["messages"][1]["content"]
    assert sent["max_tokens"] == 4  # a self-hosted server gets the legacy cap it reads


@pytest.mark.usefixtures("allow_requests")
def test_judged_faithfulness_is_reported_next_to_the_default_scorer(chat_server: FakeChatServer) -> None:
    judge = LLMJudge(LLMSettings(base_url=chat_server.url))
    citation = Citation(id=1, doc_id="d", chunk_id="d:0", title="T", source_type="news", quote=QUOTE, start=0)
    statements = [
        Statement(kind="plain", text=QUOTE, citation_ids=[1], lead=True),
        Statement(kind="plain", text="Everyone was cured.", citation_ids=[1], lead=True),
    ]
    answer = Answer(kind="answer", statements=statements, citations=[citation])
    ctx = ScoringContext(
        documents={"d": QUOTE},
        scorer=_AlwaysSupported(),
        support_threshold=0.5,
        judge=judge,
        judge_threshold=judge.threshold,
    )
    item = GoldItem(id="x", category="fact", question="q", expected_kind="answer")
    metrics = aggregate([score_item(item, [], Observation(answer=answer), ctx)])
    assert metrics["citation_recall"] == 1.0
    assert metrics["judge_citation_recall"] == 0.5 and metrics["judge_citation_precision"] == 0.5


class _AlwaysSupported:
    def support(self, claim: str, evidence: str) -> float:
        return 1.0


def test_judge_needs_a_configured_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="BPD_RAG_LLM__BASE_URL"):
        LLMJudge(LLMSettings(base_url=None))


def test_judge_respects_the_model_request_block(chat_server: FakeChatServer) -> None:
    judge = LLMJudge(LLMSettings(base_url=chat_server.url))
    with pytest.raises(RuntimeError, match="ALLOW_MODEL_REQUESTS"):
        judge.support("claim", "evidence")
    assert chat_server.bodies == []


@pytest.mark.usefixtures("allow_requests")
def test_dead_endpoint_fails_at_once_with_what_to_do() -> None:
    judge = LLMJudge(LLMSettings(base_url="http://127.0.0.1:9/v1", timeout_s=5))
    with pytest.raises(LLMUnavailableError, match="run without --llm-judge"):
        judge.support("claim", "evidence")
