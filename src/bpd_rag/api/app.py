"""create_app(settings): the FastAPI app, with the pipeline built once at startup."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from bpd_rag.api.errors import install_error_handlers
from bpd_rag.api.metrics import Metrics
from bpd_rag.api.middleware import (
    REQUEST_ID_HEADER,
    BodyGuardMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from bpd_rag.api.ratelimit import TokenBucketLimiter
from bpd_rag.api.routes import chat, docs, feedback, health, openai, widget
from bpd_rag.api.state import AppState
from bpd_rag.errors import BpdRagError
from bpd_rag.feedback import FeedbackStore
from bpd_rag.pipeline import Pipeline, build_pipeline
from bpd_rag.safety import ensure_safe_to_serve
from bpd_rag.settings import ApiSettings, Settings

log = logging.getLogger("bpd_rag.api")

PipelineFactory = Callable[[Settings], Pipeline]

DESCRIPTION = """Answers about ketamine therapy for borderline personality disorder from the clinic's curated
sources, with numbered citations. Not medical advice.

* `POST /api/chat`, `POST /api/chat/stream` (server-sent events): the Answer contract plus an `id`.
* `POST /api/feedback`: thumbs up/down on an answer id.
* `POST /v1/chat/completions`, `GET /v1/models`: OpenAI-compatible.
* Errors are `{"error": {"code": ..., "message": ...}}`.
"""


def allowed_origins(api: ApiSettings) -> list[str]:
    """The configured CORS origins, or the server's own origin (both loopback spellings when local)."""
    if api.cors_origins is not None:
        return [o.rstrip("/") for o in api.cors_origins]
    hosts = [api.host]
    if api.host in ("127.0.0.1", "localhost"):
        hosts = ["127.0.0.1", "localhost"]
    return [f"http://{h}:{api.port}" for h in hosts]


def _load(pipeline: Pipeline) -> None:
    # The crisis check's exemplar vectors and the index (chunks, BM25) now, so the first reader does not
    # wait; a missing index raises after the safety checks are ready, and its error says what to run.
    pipeline.warm_up()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the pipeline once (model loaded) and load the index; the server starts even when it is missing."""
    state: AppState = app.state.bpd_rag
    factory: PipelineFactory = app.state.pipeline_factory
    if state.pipeline is None:
        try:
            state.pipeline = await run_in_threadpool(factory, state.settings)
        except BpdRagError as exc:
            state.startup_error = str(exc)
            log.error("the pipeline could not be built: %s", exc)
    if state.pipeline is not None:
        try:
            await run_in_threadpool(_load, state.pipeline)
        except BpdRagError as exc:  # /readyz answers 503 with this until the index is there
            log.warning("not ready: %s", exc)
    yield


def create_app(settings: Settings | None = None, pipeline_factory: PipelineFactory = build_pipeline) -> FastAPI:
    """The API and widget app; settings come from the environment when none are given (uvicorn --factory)."""
    settings = settings or Settings()
    ensure_safe_to_serve(settings)  # no patient-facing server without crisis triage
    app = FastAPI(
        title="bpd-rag",
        summary="Patient-education chatbot: ketamine therapy for BPD, answered from curated sources.",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by routes/docs.py from local files: the default page loads a CDN
        redoc_url=None,
    )
    metrics = Metrics()
    app.state.bpd_rag = AppState(
        settings=settings,
        metrics=metrics,
        limiter=TokenBucketLimiter(settings.api.rate_limit_per_minute),
        feedback=FeedbackStore(settings.api.feedback_db),
    )
    app.state.pipeline_factory = pipeline_factory
    install_error_handlers(app)
    for router in (
        chat.router,
        openai.router,
        feedback.router,
        health.router,
        widget.router,
        widget.texts_router,
        docs.router,
    ):
        app.include_router(router)
    # Added innermost first: request ids and metrics see every response, CORS and security headers go on errors
    # (and on CORS's own preflight answers) too.
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed_origins(settings.api),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", REQUEST_ID_HEADER, "X-Conversation-Id"],
        expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
