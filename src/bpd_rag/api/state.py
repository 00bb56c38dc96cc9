"""What one app holds for its lifetime: settings, the pipeline built at startup, the stores and counters."""

from __future__ import annotations

from dataclasses import dataclass

from bpd_rag.api.metrics import Metrics
from bpd_rag.api.ratelimit import TokenBucketLimiter
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings


@dataclass
class AppState:
    """Kept on app.state.bpd_rag; the dependencies in deps.py hand its parts to the routes."""

    settings: Settings
    metrics: Metrics
    limiter: TokenBucketLimiter
    feedback: FeedbackStore
    pipeline: Pipeline | None = None
    startup_error: str | None = None
