"""Hardening: security headers, no Host-made URLs, http(s) links only, log lines and terminals kept clean,
clients that go away counted as 499."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send
from typer.testing import CliRunner

from bpd_rag.api.metrics import Metrics
from bpd_rag.api.middleware import RequestContextMiddleware
from bpd_rag.cli import app as cli
from bpd_rag.feedback import FeedbackStore
from bpd_rag.render import cli_text, safe_url, sources_block
from bpd_rag.settings import Settings
from tests.api.conftest import StubPipeline, cited_answer, stub_client

PAGES = ("/", "/docs")


def _csp(header: str) -> dict[str, str]:
    """A Content-Security-Policy as {directive: sources}."""
    return {d.split()[0]: " ".join(d.split()[1:]) for d in header.split(";") if d.strip()}


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_scripts_and_styles_from_this_server_only_and_cannot_be_framed(
    client: TestClient, path: str
) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = _csp(page.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self' 'unsafe-inline'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", PAGES)
def test_pages_still_work_under_their_policy(client: TestClient, path: str) -> None:
    """script-src 'self' blocks inline scripts: every script is a file of this server, and each one loads."""
    text = client.get(path).text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.DOTALL | re.IGNORECASE)
    assert scripts
    for attributes, body in scripts:
        assert body.strip() == "", f"inline script on {path}: {body[:80]!r}"
        src = re.search(r'\bsrc="([^"]+)"', attributes)
        assert src is not None and src.group(1).startswith("/") and not src.group(1).startswith("//")
        script = client.get(src.group(1))
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert re.search(r"<[^>]*\son[a-z]+\s*=", text) is None  # event handler attributes are inline scripts too
    for href in re.findall(r'<link\b[^>]*\bhref="([^"]+)"', text):
        assert href.startswith("/") and client.get(href).status_code == 200


def test_every_response_gets_nosniff_and_no_referrer_but_only_pages_get_frame_rules(client: TestClient) -> None:
    widget = client.get("/widget.js")  # embedded in other sites' pages with a <script> tag
    error = client.post("/api/chat", json={"message": ""})
    for response in (widget, error, client.get("/healthz"), client.get("/openapi.json"), client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "x-frame-options" not in response.headers
    assert "content-security-policy" not in widget.headers  # it would not apply to the page embedding it anyway


def test_the_host_header_does_not_choose_where_the_demo_page_loads_the_widget_from(client: TestClient) -> None:
    page = client.get("/", headers={"Host": "evil.example"}).text
    assert "evil.example" not in page
    assert '<script src="/widget.js"' in page


UNSAFE_URLS = [
    "javascript:alert(1)",
    " JavaScript:alert(document.cookie)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/phish",
    "https://",
    "https://example.org/a\n[2] Fake source",
]


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_only_http_links_reach_the_openai_sources_text(settings: Settings, url: str) -> None:
    from bpd_rag.api import create_app

    client = stub_client(create_app(settings), StubPipeline(cited_answer(url=url)))
    body = {"messages": [{"role": "user", "content": "What dose?"}]}
    content = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    sources = content.split("Sources:", 1)[1]
    assert "[1] Ketamine for Borderline Personality Disorder" in sources
    assert url.strip().split("\n")[0] not in sources and "Fake source" not in sources


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_unsafe_urls_are_dropped_from_every_text_rendering(url: str) -> None:
    answer = cited_answer(url=url)
    assert safe_url(url) is None
    for text in (sources_block(answer.citations), cli_text(answer)):
        assert url.strip().split("\n")[0] not in text


def test_http_and_https_links_are_kept() -> None:
    for url in ("https://example.org/ketamine?x=1#top", "http://example.org/a", "HTTPS://Example.org/"):
        assert safe_url(url) == url
        assert f"({url})" in sources_block(cited_answer(url=url).citations)
    assert safe_url(None) is None and safe_url("") is None


def test_control_characters_in_the_path_cannot_forge_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "request_id=x method=GET path=/api/chat status=200 duration_ms=1.0"
    with caplog.at_level(logging.INFO, logger="bpd_rag"):
        client.get("/healthz%0A" + forged.replace(" ", "%20") + "%0D%1B[2J", headers={"X-Request-ID": "req-log"})
    [line] = [r.getMessage() for r in caplog.records if "request_id=req-log" in r.getMessage()]
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "path=/healthz\\n" + forged + "\\r\\x1b[2J status=404" in line


# A client that goes away: driven at the ASGI level, as a server does.


def _scope(method: str, path: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"30")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def _gone() -> Message:
    return {"type": "http.disconnect"}


async def _ignore(message: Message) -> None:
    return None


def _call(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    asyncio.run(app(scope, receive, send))


def _metric_line(method: str, route: str, status: int) -> str:
    return f'bpd_rag_http_requests_total{{method="{method}",route="{route}",status="{status}"}} 1.0'


@pytest.fixture
def served(settings: Settings) -> tuple[FastAPI, TestClient]:
    from bpd_rag.api import create_app

    app = create_app(settings)
    return app, stub_client(app, StubPipeline())


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_client_gone_while_sending_its_body_is_499_not_500(
    served: tuple[FastAPI, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = served
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        _call(app, _scope("POST", "/api/chat"), _gone, send)
    assert sent == []  # nobody to answer
    metrics = client.get("/metrics").text
    assert _metric_line("POST", "unmatched", 499) in metrics and 'status="500"' not in metrics
    assert any("status=499" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert _errors(caplog) == []


@pytest.mark.parametrize("error", [OSError("connection reset by peer"), ConnectionResetError()])
def test_a_client_gone_when_the_response_is_sent_is_499_not_an_error(
    served: tuple[FastAPI, TestClient], caplog: pytest.LogCaptureFixture, error: OSError
) -> None:
    """ASGI 2.4 servers raise OSError from send() once the client has gone."""
    app, client = served

    async def send(message: Message) -> None:
        raise error

    with caplog.at_level(logging.INFO):
        _call(app, _scope("GET", "/healthz"), _gone, send)  # raised nothing: nobody is left to tell
    metrics = client.get("/metrics").text
    assert _metric_line("GET", "/healthz", 499) in metrics and 'status="500"' not in metrics
    assert _errors(caplog) == []


def test_a_request_cancelled_at_send_is_499_and_stays_cancelled(
    served: tuple[FastAPI, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = served

    async def send(message: Message) -> None:
        raise asyncio.CancelledError

    with caplog.at_level(logging.INFO), pytest.raises(asyncio.CancelledError):
        _call(app, _scope("GET", "/healthz"), _gone, send)
    metrics = client.get("/metrics").text
    assert _metric_line("GET", "/healthz", 499) in metrics and 'status="500"' not in metrics
    assert _errors(caplog) == []


def test_client_disconnect_raised_by_the_app_is_499(caplog: pytest.LogCaptureFixture) -> None:
    async def reads_a_body(scope: Scope, receive: Receive, send: Send) -> None:
        raise ClientDisconnect  # what starlette's Request.body() raises on http.disconnect

    metrics = Metrics()
    with caplog.at_level(logging.INFO):
        _call(RequestContextMiddleware(reads_a_body, metrics), _scope("POST", "/x"), _gone, _ignore)
    assert metrics.requests.labels("POST", "unmatched", "499")._value.get() == 1
    assert metrics.requests.labels("POST", "unmatched", "500")._value.get() == 0


def test_a_real_error_after_a_complete_response_is_still_not_hidden() -> None:
    """A disconnect seen after the whole response went out changes nothing; an app error still raises."""

    async def answers_then_fails(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
        await receive()  # the server says http.disconnect once the response is complete
        raise OSError("disk full")

    metrics = Metrics()
    with pytest.raises(OSError, match="disk full"):
        _call(RequestContextMiddleware(answers_then_fails, metrics), _scope("GET", "/x"), _gone, _ignore)
    assert metrics.requests.labels("GET", "unmatched", "200")._value.get() == 1


# `bpd-rag report`: what readers typed is shown, never run by the terminal.

HOSTILE_COMMENT = "bad\x1b[2J\x1b]0;pwned\x07\x9b31m"
HOSTILE_QUESTION = "dose?\x1b[31m\u202eevil"


def _report(tmp_path: Path, *args: str) -> str:
    env = {"BPD_RAG_API__FEEDBACK_DB": str(tmp_path / "f.db"), "COLUMNS": "250"}  # wide enough not to cut cells
    result = CliRunner().invoke(cli, ["report", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _raw_controls(text: str) -> list[str]:
    return [hex(ord(ch)) for ch in text if ch in "\x1b\x07\x9b\u202e"]


def test_report_feedback_escapes_control_characters_from_readers(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    store.record_question("a1", HOSTILE_QUESTION, "answer")
    store.add_feedback("a1", "down", HOSTILE_COMMENT)
    table = _report(tmp_path, "feedback")
    assert _raw_controls(table) == []
    flat = re.sub(r"[\s│┃|]+", "", table)
    assert "\\x1b[2J" in flat and "\\u202e" in flat
    as_json = _report(tmp_path, "feedback", "--json")
    assert _raw_controls(as_json) == []
    row = json.loads(as_json)["feedback"][0]
    assert row["comment"] == HOSTILE_COMMENT and row["question"] == HOSTILE_QUESTION  # the data, unchanged


def test_report_unanswered_escapes_control_characters_from_readers(tmp_path: Path) -> None:
    FeedbackStore(tmp_path / "f.db").record_question("a1", HOSTILE_QUESTION, "no_answer")
    table = _report(tmp_path, "unanswered")
    assert _raw_controls(table) == [] and "\\x1b[31m" in re.sub(r"[\s│┃|]+", "", table)
    as_json = _report(tmp_path, "unanswered", "--json")
    assert _raw_controls(as_json) == []
    assert json.loads(as_json)["unanswered"][0]["question"] == HOSTILE_QUESTION
