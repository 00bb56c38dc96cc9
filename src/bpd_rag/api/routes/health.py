"""Operations: /healthz (alive), /readyz (index and model loaded, store answering), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from bpd_rag.api.deps import MetricsDep, StateDep
from bpd_rag.api.errors import ApiError, ErrorResponse
from bpd_rag.api.schemas import Health, Readiness
from bpd_rag.errors import BpdRagError
from bpd_rag.pipeline import Pipeline

router = APIRouter(tags=["operations"])


def _readiness(pipeline: Pipeline) -> Readiness:
    retriever = pipeline.retriever
    # Asks the store itself (a Chroma server within its timeout): raises with a how-to-fix message when it is
    # down, or the index is missing, damaged or built with another embedder.
    chunks = retriever.check()
    return Readiness(index=retriever.store.location, chunks=chunks, embedder=pipeline.embedder.name)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (says nothing about the index)."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse, "description": "Not ready; the message says why and what to run."}},
)
async def readyz(state: StateDep) -> Readiness:
    """Ready to answer: the model is loaded, the index is found, readable and built with the same embedder, and
    its store answers now (a Chroma server is asked, within BPD_RAG_STORE__TIMEOUT_S)."""
    if state.pipeline is None:
        raise ApiError(503, "not_ready", state.startup_error or "The server is still starting.")
    try:
        return await run_in_threadpool(_readiness, state.pipeline)
    except BpdRagError as exc:
        raise ApiError(503, "not_ready", str(exc)) from exc


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Request counts, latency histograms and answers by kind, in the Prometheus text format."""
    return Response(metrics.render(), media_type=metrics.content_type)
