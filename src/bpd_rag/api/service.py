"""Answering one chat request: input limits, triage first, then the rate limit and the answer in a worker thread.

Crisis first: the safety layer's decision is taken on threads of its own (AppState.triage), before the rate
limit, the worker pool, the index or the LLM are touched, and a crisis reply is sent from there. Only the
other replies wait for a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from starlette.concurrency import run_in_threadpool

from bpd_rag.api.errors import ApiError
from bpd_rag.api.metrics import Metrics
from bpd_rag.api.ratelimit import TokenBucketLimiter, retry_after_header
from bpd_rag.api.schemas import ChatResponse
from bpd_rag.errors import (
    BpdRagError,
    IndexCorruptError,
    IndexMissingError,
    LLMUnavailableError,
    StoreUnavailableError,
)
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.safety.conversations import ConversationStore
from bpd_rag.settings import ApiSettings
from bpd_rag.textutil import without_surrogates
from bpd_rag.types import Answer, Message, SafetyDecision

log = logging.getLogger("bpd_rag.api")

_ERROR_CODES: tuple[tuple[type[BpdRagError], str], ...] = (  # the first match wins: subclasses first
    (StoreUnavailableError, "store_unavailable"),
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


def rate_limited(limiter: TokenBucketLimiter, client: str, metrics: Metrics) -> ApiError | None:
    """A 429 with Retry-After when this client has used up its requests for now (None: go ahead)."""
    wait = limiter.acquire(client)
    if wait <= 0:
        return None
    metrics.rate_limited.inc()
    seconds = retry_after_header(wait)
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests from your address (the limit is {int(limiter.capacity)} per minute). "
        f"Try again in {seconds} seconds.",
        headers={"Retry-After": seconds},
    )


class ChatService:
    """Answers one request; made per request by deps.get_chat_service."""

    def __init__(
        self,
        pipeline: Pipeline,
        limits: ApiSettings,
        feedback: FeedbackStore,
        metrics: Metrics,
        request_state: Any,
        limiter: TokenBucketLimiter | None = None,
        client: str = "unknown",
        conversations: ConversationStore | None = None,
        triage: Executor | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.feedback = feedback
        self.metrics = metrics
        self.state = request_state
        self.limiter = limiter
        self.client = client
        self.conversations = conversations
        self.triage = triage

    async def ask(
        self,
        message: str,
        history: Sequence[Message],
        channel: str = "api",
        conversation_id: str | None = None,
    ) -> ChatResponse:
        """Check the input, triage it (a crisis reply goes out at once, rate limit or not), then answer."""
        check_input(message, history, self.limits)
        message = without_surrogates(message)
        history = [m.model_copy(update={"content": without_surrogates(m.content)}) for m in history]
        request_id = getattr(self.state, "request_id", "")
        if self.limits.log_message_text:
            log.info("request_id=%s message=%r history_messages=%d", request_id, message, len(history))
        answer_id = str(uuid.uuid4())
        started = time.perf_counter()
        conversation = self.conversations.get(conversation_id) if self.conversations is not None else None
        loop = asyncio.get_running_loop()
        try:
            decision = await loop.run_in_executor(self.triage, self.pipeline.assess, message, history, conversation)
            if decision.action != "crisis" and self.limiter is not None:
                refused = rate_limited(self.limiter, self.client, self.metrics)
                if refused is not None:
                    raise refused
            reply = functools.partial(self._reply, message, history, decision, answer_id, channel, request_id)
            if decision.action == "crisis":  # built from prompts alone: no index, no LLM, no worker queue
                answer = await loop.run_in_executor(self.triage, reply)
            else:
                answer = await run_in_threadpool(reply)
        except BpdRagError as exc:
            log.warning("request_id=%s pipeline unavailable: %s", request_id, exc)
            raise unavailable(exc) from exc
        elapsed = time.perf_counter() - started
        self.metrics.answers.labels(answer.kind).inc()
        self.metrics.answer_latency.observe(elapsed)
        self.state.answer_kind = answer.kind
        self.state.answer_ms = elapsed * 1000
        return ChatResponse.of(answer, answer_id)

    def _reply(
        self,
        message: str,
        history: list[Message],
        decision: SafetyDecision,
        answer_id: str,
        channel: str,
        request_id: str,
    ) -> Answer:
        """The reply, then the question logged (a failed log write never costs the reader the reply)."""
        answer = self.pipeline.reply(message, history, decision)
        if not self.limits.record_questions:
            return answer
        try:
            self.feedback.record_question(answer_id, message, answer.kind, channel)
        except (BpdRagError, UnicodeError, ValueError) as exc:
            log.error("request_id=%s question not recorded: %s", request_id, exc)
        return answer
