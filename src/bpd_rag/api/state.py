"""What one app holds for its lifetime: settings, the pipeline built at startup, the stores and counters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bpd_rag.api.metrics import Metrics
from bpd_rag.api.ratelimit import TokenBucketLimiter
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.safety.conversations import ConversationStore
from bpd_rag.settings import Settings

# Threads that only triage messages: a crisis reply never queues behind retrieval, Chroma or the LLM.
TRIAGE_THREADS = 2


def _triage_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=TRIAGE_THREADS, thread_name_prefix="bpd-rag-triage")


@dataclass
class AppState:
    """Kept on app.state.bpd_rag; the dependencies in deps.py hand its parts to the routes."""

    settings: Settings
    metrics: Metrics
    limiter: TokenBucketLimiter
    feedback: FeedbackStore
    pipeline: Pipeline | None = None
    startup_error: str | None = None
    conversations: ConversationStore = field(default_factory=ConversationStore)
    triage: ThreadPoolExecutor = field(default_factory=_triage_pool)
