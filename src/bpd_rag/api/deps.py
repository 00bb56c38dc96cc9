"""Dependencies the routes declare as Annotated[..., Depends(...)]; tests swap them via app.dependency_overrides.

All are `async def`: FastAPI runs a plain `def` dependency in the worker pool, and a crisis message must never
wait for a worker thread (see service.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bpd_rag.api.errors import ApiError
from bpd_rag.api.metrics import Metrics
from bpd_rag.api.ratelimit import TokenBucketLimiter
from bpd_rag.api.service import ChatService, rate_limited
from bpd_rag.api.state import AppState
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings


async def get_state(request: Request) -> AppState:
    """The app's long-lived state."""
    state: AppState = request.app.state.bpd_rag
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """The settings the app was created with."""
    return state.settings


async def get_pipeline(state: StateDep) -> Pipeline:
    """The pipeline built at startup (503 with the reason when it could not be built)."""
    if state.pipeline is None:
        raise ApiError(503, "not_ready", state.startup_error or "The server is still starting. Try again shortly.")
    return state.pipeline


async def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


async def get_feedback_store(state: StateDep) -> FeedbackStore:
    return state.feedback


async def get_limiter(state: StateDep) -> TokenBucketLimiter:
    return state.limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback_store)]
LimiterDep = Annotated[TokenBucketLimiter, Depends(get_limiter)]


async def get_chat_service(
    request: Request, pipeline: PipelineDep, settings: SettingsDep, feedback: FeedbackDep, metrics: MetricsDep
) -> ChatService:
    """A ChatService for this request (triage threads, conversation store and rate limit from the app state)."""
    state: AppState = request.app.state.bpd_rag
    return ChatService(
        pipeline,
        settings.api,
        feedback,
        metrics,
        request.state,
        limiter=state.limiter,
        client=client_key(request),
        conversations=state.conversations,
        triage=state.triage,
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]


def client_key(request: Request) -> str:
    """The client's address, as the rate limit counts requests."""
    return request.client.host if request.client else "unknown"


async def rate_limit(request: Request, limiter: LimiterDep, metrics: MetricsDep) -> None:
    """429 with Retry-After when this client IP has used up its requests for now (the chat routes apply the
    limit after triage instead, so a crisis message is never refused)."""
    refused = rate_limited(limiter, client_key(request), metrics)
    if refused is not None:
        raise refused
