"""Dependencies the routes declare as Annotated[..., Depends(...)]; tests swap them via app.dependency_overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bpd_rag.api.errors import ApiError
from bpd_rag.api.metrics import Metrics
from bpd_rag.api.ratelimit import TokenBucketLimiter, retry_after_header
from bpd_rag.api.service import ChatService
from bpd_rag.api.state import AppState
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings


def get_state(request: Request) -> AppState:
    """The app's long-lived state."""
    state: AppState = request.app.state.bpd_rag
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    """The settings the app was created with."""
    return state.settings


def get_pipeline(state: StateDep) -> Pipeline:
    """The pipeline built at startup (503 with the reason when it could not be built)."""
    if state.pipeline is None:
        raise ApiError(503, "not_ready", state.startup_error or "The server is still starting. Try again shortly.")
    return state.pipeline


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def get_feedback_store(state: StateDep) -> FeedbackStore:
    return state.feedback


def get_limiter(state: StateDep) -> TokenBucketLimiter:
    return state.limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback_store)]
LimiterDep = Annotated[TokenBucketLimiter, Depends(get_limiter)]


def get_chat_service(
    request: Request, pipeline: PipelineDep, settings: SettingsDep, feedback: FeedbackDep, metrics: MetricsDep
) -> ChatService:
    """A ChatService for this request."""
    return ChatService(pipeline, settings.api, feedback, metrics, request.state)


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]


async def rate_limit(request: Request, limiter: LimiterDep, metrics: MetricsDep) -> None:
    """429 with Retry-After when this client IP has used up its requests for now."""
    client = request.client.host if request.client else "unknown"
    wait = limiter.acquire(client)
    if wait > 0:
        metrics.rate_limited.inc()
        seconds = retry_after_header(wait)
        per_minute = int(limiter.capacity)
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests from your address (the limit is {per_minute} per minute). "
            f"Try again in {seconds} seconds.",
            headers={"Retry-After": seconds},
        )
