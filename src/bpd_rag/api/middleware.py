"""ASGI middleware: request ids, timing logs and metrics; body size and encoding checks."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bpd_rag.api.errors import error_response
from bpd_rag.api.metrics import Metrics
from bpd_rag.redact import printable

log = logging.getLogger("bpd_rag.api")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The status logged and counted when the client went away before its response was sent (nginx's "client closed
# request"): nobody was let down by the server, so it must not read as a 500.
CLIENT_CLOSED = 499

# Our HTML pages (the demo page, /docs) load scripts and styles from this server only. Inline styles are allowed:
# the demo clinic's CSS, the widget's <style> in its shadow root and Swagger UI's style attributes need them, and
# Swagger UI's CSS draws its icons as data: images. No page of ours is meant to be framed (widget.js is embedded
# with a <script> tag, which frame rules do not touch).
PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
EVERY_RESPONSE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"}


def request_state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict (what request.state reads and writes)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID when sane), echoes it, logs and measures the request.

    The log line carries the id, route, status, timings and the answer kind, never the message text; what the
    client chose (path, method) has its control characters escaped, so it cannot start a line of its own.
    A client that went away before its response was sent is counted and logged with status 499, not as an error.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = request_state(scope)
        state["request_id"] = request_id
        status = 500
        sent = False  # the whole response went out
        gone = False  # the client disconnected before that
        started = time.perf_counter()

        async def receive_watching() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not sent:
                gone = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, gone
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            try:
                await send(message)
            except (OSError, asyncio.CancelledError):  # servers of ASGI 2.4 raise OSError when the client is gone
                gone = True
                raise
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent = True

        try:
            await self.app(scope, receive_watching, send_with_id)
        except ClientDisconnect:
            gone = True  # nobody is left to answer, and nothing went wrong on the server
        except OSError:
            if not gone:
                raise
        except asyncio.CancelledError:
            gone = True
            raise
        finally:
            if gone and not sent:
                status = CLIENT_CLOSED
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            extra = ""
            if "answer_kind" in state:
                extra = f" kind={state['answer_kind']} answer_ms={state.get('answer_ms', 0):.1f}"
            log.info(
                "request_id=%s method=%s path=%s status=%s duration_ms=%.1f%s",
                request_id,
                printable(method),
                printable(scope.get("path", "")),
                status,
                elapsed * 1000,
                extra,
            )


class SecurityHeadersMiddleware:
    """Adds nosniff and Referrer-Policy to every response, and a Content-Security-Policy and X-Frame-Options to
    HTML pages; a header a route set itself is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                added = dict(EVERY_RESPONSE_HEADERS)
                if headers.get("content-type", "").startswith("text/html"):
                    added.update(PAGE_HEADERS)
                for name, value in added.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyGuardMiddleware:
    """Refuses request bodies over the size limit (413) or not UTF-8 (400) before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_large = error_response(
            413,
            "body_too_large",
            f"The request body is larger than {self.max_bytes} bytes. Send a shorter message or less history.",
        )
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = error_response(
                400,
                "invalid_encoding",
                f"The request body is not UTF-8 (bad byte at position {exc.start}). Encode the JSON body as UTF-8.",
            )
            await bad(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
