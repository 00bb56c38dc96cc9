"""Health, readiness, metrics, docs, request ids and logs, rate limit, CORS, the widget's files."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bpd_rag.api import create_app
from bpd_rag.api.app import allowed_origins
from bpd_rag.api.ratelimit import TokenBucketLimiter
from bpd_rag.errors import ConfigurationError
from bpd_rag.settings import ApiSettings
from tests.api.conftest import ANSWERED, StubPipeline, api_settings, stub_client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["chunks"] > 10 and ready["embedder"].startswith("hash")


def test_the_crisis_check_is_ready_when_the_server_is(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        guard = app.state.bpd_rag.pipeline.guard
        assert guard.ready  # models loaded at startup, not by the first message


def test_the_crisis_check_is_ready_even_when_the_index_is_missing(tmp_path: Path) -> None:
    app = create_app(api_settings(tmp_path, tmp_path / "no-index"))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        assert app.state.bpd_rag.pipeline.guard.ready
        reply = client.post("/api/chat", json={"message": "I want to kill myself tonight"})
        assert reply.status_code == 200 and reply.json()["kind"] == "crisis"


def test_metrics_count_requests_latency_and_answer_kinds(client: TestClient) -> None:
    client.post("/api/chat", json={"message": ANSWERED})
    client.post("/api/chat", json={"message": ""})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'bpd_rag_http_requests_total{method="POST",route="/api/chat",status="200"} 1.0' in text
    assert 'bpd_rag_http_requests_total{method="POST",route="/api/chat",status="422"} 1.0' in text
    assert 'bpd_rag_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/api/chat"}' in text
    assert 'bpd_rag_answers_total{kind="answer"} 1.0' in text
    assert "bpd_rag_answer_duration_seconds_count 1.0" in text


def test_openapi_docs(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Offline: the page may only load its scripts and styles from this server.
    assert "cdn." not in docs.text and "https://" not in docs.text.replace("https://fastapi.tiangolo.com", "")
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in docs.text
        assert client.get(asset).status_code == 200
    assert client.get("/docs-assets/../../etc/passwd").status_code == 404
    spec = client.get("/openapi.json").json()
    assert {"/api/chat", "/api/chat/stream", "/api/feedback", "/v1/chat/completions", "/v1/models"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/api/chat"]["post"]["description"]


def test_unknown_paths_and_methods_are_json_errors(client: TestClient) -> None:
    missing = client.get("/api/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/api/chat")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert made.headers["x-request-id"] != "bad id <script>" and len(made.headers["x-request-id"]) == 32
    error = client.post("/api/chat", json={"message": ""}, headers={"X-Request-ID": "req-9"})
    assert error.headers["x-request-id"] == "req-9"


SECRET = "my private question about ketamine and jane@example.com"


def test_logs_carry_id_kind_and_timings_but_no_message_text(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bpd_rag"):
        client.post("/api/chat", json={"message": SECRET}, headers={"X-Request-ID": "req-1"})
    line = next(r.getMessage() for r in caplog.records if "req-1" in r.getMessage())
    assert re.search(r"kind=\w+", line) and "duration_ms=" in line and "answer_ms=" in line and "status=200" in line
    assert all("private question" not in r.getMessage() for r in caplog.records)


def test_message_text_is_logged_only_when_the_debug_setting_says_so(
    tmp_path: Path, hash_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api_settings(tmp_path, hash_index, log_message_text=True))
    with caplog.at_level(logging.INFO, logger="bpd_rag"):
        stub_client(app, StubPipeline()).post("/api/chat", json={"message": SECRET})
    assert any("private question" in r.getMessage() for r in caplog.records)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index, rate_limit_per_minute=2))
    client = stub_client(app, StubPipeline())
    assert [client.post("/api/chat", json={"message": "q"}).status_code for _ in range(2)] == [200, 200]
    limited = client.post("/api/chat/stream", json={"message": "q"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    error = limited.json()["error"]
    assert error["code"] == "rate_limited" and "2 per minute" in error["message"]
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}).status_code == 429
    assert client.get("/healthz").status_code == 200  # operations are never limited
    assert "bpd_rag_rate_limited_requests_total 2.0" in client.get("/metrics").text


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=30, clock=lambda: now[0])
    assert all(limiter.acquire("a") == 0.0 for _ in range(30))
    wait = limiter.acquire("a")
    assert wait == pytest.approx(2.0)  # one token every 2 s
    assert limiter.acquire("b") == 0.0  # another client has its own bucket
    now[0] += 2.0
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert TokenBucketLimiter(per_minute=0).acquire("a") == 0.0  # 0 turns the limit off


def test_cors_allows_only_configured_origins(tmp_path: Path, hash_index: Path) -> None:
    app = create_app(api_settings(tmp_path, hash_index, cors_origins=["https://clinic.example"]))
    client = stub_client(app, StubPipeline())
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options("/api/chat", headers={"Origin": "https://clinic.example", **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://clinic.example"
    bad = client.options("/api/chat", headers={"Origin": "https://evil.example", **preflight})
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
    post = client.post("/api/chat", json={"message": "q"}, headers={"Origin": "https://clinic.example"})
    assert post.headers["access-control-allow-origin"] == "https://clinic.example"
    error = client.post("/api/chat", json={"message": ""}, headers={"Origin": "https://clinic.example"})
    assert error.headers["access-control-allow-origin"] == "https://clinic.example"  # errors readable by the widget


def test_default_cors_origin_is_the_server_itself() -> None:
    assert allowed_origins(ApiSettings()) == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert allowed_origins(ApiSettings(host="bot.clinic.example", port=443)) == ["http://bot.clinic.example:443"]


def test_serving_without_triage_is_refused_unless_in_development(tmp_path: Path, hash_index: Path) -> None:
    settings = api_settings(tmp_path, hash_index)
    unsafe = settings.model_copy(update={"safety": settings.safety.model_copy(update={"triage_enabled": False})})
    with pytest.raises(ConfigurationError, match="TRIAGE_ENABLED"):
        create_app(unsafe)
    dev = unsafe.model_copy(update={"safety": unsafe.safety.model_copy(update={"allow_unsafe_dev": True})})
    assert create_app(dev) is not None


def test_widget_script_and_demo_page(client: TestClient) -> None:
    script = client.get("/widget.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "customElements.define" in script.text and "innerHTML" not in script.text
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/widget.js" data-api="" defer></script>' in page.text  # never from the Host header


def test_demo_page_escapes_a_hostile_host_header(client: TestClient) -> None:
    page = client.get("/", headers={"Host": 'evil"><script>alert(1)</script>'})
    assert "<script>alert(1)</script>" not in page.text
