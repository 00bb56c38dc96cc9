"""ASGI middleware: request ids, timing logs and metrics; body size and encoding checks."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bpd_rag.api.errors import error_response
from bpd_rag.api.metrics import Metrics

log = logging.getLogger("bpd_rag.api")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict (what request.state reads and writes)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID when sane), echoes it, logs and measures the request.

    The log line carries the id, route, status, timings and the answer kind, never the message text.
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
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
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
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra,
            )


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
