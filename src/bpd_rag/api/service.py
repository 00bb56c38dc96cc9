"""Answering one chat request: input limits, Pipeline.ask in a worker thread, the question log and metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from bpd_rag.api.errors import ApiError
from bpd_rag.api.metrics import Metrics
from bpd_rag.api.schemas import ChatResponse
from bpd_rag.errors import BpdRagError, IndexCorruptError, IndexMissingError, LLMUnavailableError
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import ApiSettings
from bpd_rag.types import Answer, Message

log = logging.getLogger("bpd_rag.api")

_ERROR_CODES: tuple[tuple[type[BpdRagError], str], ...] = (
    (IndexMissingError, "index_missing"),
    (IndexCorruptError, "index_corrupt"),
    (LLMUnavailableError, "llm_unavailable"),
)


def check_input(message: str, history: Sequence[Message], limits: ApiSettings) -> None:
    """Raise a 422 ApiError for an empty or too long message or too much history."""
    if not message.strip():
        raise ApiError(
            422, "empty_message", 'The message is empty. Type a question, e.g. "What dose was used in the pilot trial?"'
        )
    if len(message) > limits.max_message_chars:
        raise ApiError(
            422,
            "message_too_long",
            f"The message has {len(message)} characters; the limit is {limits.max_message_chars}. "
            "Shorten it or ask one question at a time.",
        )
    if len(history) > limits.max_history_messages:
        raise ApiError(
            422,
            "history_too_long",
            f"The history has {len(history)} messages; at most {limits.max_history_messages} are accepted. "
            "Send only the latest turns.",
        )
    total = sum(len(m.content) for m in history)
    if total > limits.max_history_chars:
        raise ApiError(
            422,
            "history_too_long",
            f"The history has {total} characters; at most {limits.max_history_chars} are accepted. "
            "Send only the latest turns.",
        )


def unavailable(exc: BpdRagError) -> ApiError:
    """A 503 carrying the pipeline's own message (it says how to fix it, e.g. 'Build it with: bpd-rag ingest')."""
    code = next((c for cls, c in _ERROR_CODES if isinstance(exc, cls)), "unavailable")
    return ApiError(503, code, str(exc))


class ChatService:
    """Answers one request; made per request by deps.get_chat_service."""

    def __init__(
        self,
        pipeline: Pipeline,
        limits: ApiSettings,
        feedback: FeedbackStore,
        metrics: Metrics,
        request_state: Any,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.feedback = feedback
        self.metrics = metrics
        self.state = request_state

    async def ask(self, message: str, history: Sequence[Message], channel: str = "api") -> ChatResponse:
        """Check the input, answer in a worker thread (retrieval is CPU-bound), log the question and its kind."""
        check_input(message, history, self.limits)
        request_id = getattr(self.state, "request_id", "")
        if self.limits.log_message_text:
            log.info("request_id=%s message=%r history_messages=%d", request_id, message, len(history))
        answer_id = str(uuid.uuid4())
        try:
            # One trip to a worker thread for both (each trip costs a few tenths of a millisecond).
            answer, elapsed = await run_in_threadpool(
                self._answer, message, list(history), answer_id, channel, request_id
            )
        except BpdRagError as exc:
            log.warning("request_id=%s pipeline unavailable: %s", request_id, exc)
            raise unavailable(exc) from exc
        self.metrics.answers.labels(answer.kind).inc()
        self.metrics.answer_latency.observe(elapsed)
        self.state.answer_kind = answer.kind
        self.state.answer_ms = elapsed * 1000
        return ChatResponse.of(answer, answer_id)

    def _answer(
        self, message: str, history: list[Message], answer_id: str, channel: str, request_id: str
    ) -> tuple[Answer, float]:
        """Pipeline.ask and its duration, then the question logged (in the worker thread)."""
        started = time.perf_counter()
        answer = self.pipeline.ask(message, history)
        elapsed = time.perf_counter() - started
        if self.limits.record_questions:
            try:
                self.feedback.record_question(answer_id, message, answer.kind, channel)
            except BpdRagError as exc:  # the reader still gets the answer; the log line says what to fix
                log.error("request_id=%s question not recorded: %s", request_id, exc)
        return answer, elapsed
