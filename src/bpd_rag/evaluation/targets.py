"""What the evaluation asks: the in-process pipeline, a running server over HTTP, or the LangChain baseline.

Each target turns one gold item into an Observation: the reply, how long it took, and the passages the
reply was built from (for retrieval metrics) where the target can tell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from bpd_rag.errors import ConfigurationError, IndexCorruptError, IndexMissingError
from bpd_rag.evaluation.gold import GoldItem
from bpd_rag.evaluation.retrieval_metrics import Span
from bpd_rag.retrieval import resolve_query
from bpd_rag.types import Answer, Message, Passage

if TYPE_CHECKING:
    from bpd_rag.evaluation.baseline import BaselinePipeline
    from bpd_rag.pipeline import Pipeline

# Errors that make every further question fail the same way: the run stops and says how to fix it.
FATAL_ERRORS = (IndexMissingError, IndexCorruptError, ConfigurationError)


class Retrieved(BaseModel):
    """Where a passage the reply was built from stands in its document."""

    doc_id: str
    chunk_id: str
    start: int
    end: int


class Observation(BaseModel):
    """One gold question put to a target."""

    answer: Answer | None = None
    error: str | None = None
    latency_s: float = 0.0
    retrieved: list[Retrieved] | None = Field(default=None, description="None when the target cannot tell.")
    query: str | None = Field(default=None, description="The query retrieval ran with, where known.")
    gold_sentence_score: float | None = Field(
        default=None,
        description="Extractive answerer only: best score of a retrieved sentence inside a gold quote.",
    )


class Target(Protocol):
    """Something that answers gold questions."""

    name: str
    retrieval_source: str  # how `retrieved` was obtained, said in the report

    def describe(self) -> dict[str, Any]: ...

    def observe(self, item: GoldItem, spans: Sequence[Span]) -> Observation: ...


def _refs(passages: Sequence[Passage]) -> list[Retrieved]:
    return [
        Retrieved(doc_id=p.chunk.doc_id, chunk_id=p.chunk.chunk_id, start=p.chunk.start, end=p.chunk.end)
        for p in passages
    ]


def _timed_ask(ask: Any, item: GoldItem) -> tuple[Answer | None, str | None, float]:
    started = time.perf_counter()
    try:
        answer, error = ask(item.question, item.history), None
    except FATAL_ERRORS:
        raise
    # Broad on purpose: a failing question is a finding to report, not a reason to lose the whole run.
    except Exception as exc:
        answer, error = None, f"{type(exc).__name__}: {exc}"
    return answer, error, time.perf_counter() - started


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.1)
    except ValueError:  # an HTTP date instead of seconds: wait a little and try again
        return 1.0


class PipelineTarget:
    """The in-process Pipeline, exactly as the CLI builds it."""

    name = "pipeline"
    retrieval_source = (
        "the pipeline's retriever, called as Pipeline.ask calls it (follow-up resolution, spelling correction)"
    )

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def describe(self) -> dict[str, Any]:
        settings = self.pipeline.settings
        return {
            "target": "in-process pipeline",
            "answerer": settings.answer.backend,
            "safety_layer": self.pipeline.guard is not None,
            "top_k": settings.retrieval.top_k,
        }

    def observe(self, item: GoldItem, spans: Sequence[Span]) -> Observation:
        answer, error, latency = _timed_ask(self.pipeline.ask, item)
        # The ranking Pipeline.ask retrieved (retrieval is deterministic, so asking again gives the same one).
        retriever = self.pipeline.retriever
        query = retriever.correct_spelling(resolve_query(item.question, item.history))
        ranked = retriever.retrieve(query)
        # What the answerer was given, where the pipeline says (it may add passages to the ranking).
        passages_for = getattr(self.pipeline, "passages_for", None)
        given = passages_for(item.question, item.history)[1] if passages_for is not None else ranked
        return Observation(
            answer=answer,
            error=error,
            latency_s=latency,
            retrieved=_refs(ranked),
            query=query,
            gold_sentence_score=self._gold_sentence_score(query, given, spans),
        )

    def _gold_sentence_score(self, query: str, passages: Sequence[Passage], spans: Sequence[Span]) -> float | None:
        """How the extractive answerer scored the best gold sentence it was given (for diagnosing misses)."""
        if not spans or self.pipeline.settings.answer.backend != "extractive":
            return None
        scores = [
            c.score
            for c in self.pipeline.extractive.score(query, passages)
            if any(
                c.doc_id == s.doc_id and c.doc_offset < s.end and s.start < c.doc_offset + len(c.text) for s in spans
            )
        ]
        return max(scores) if scores else None


class HttpTarget:
    """A running server, through POST /api/chat: what patients use is what is measured."""

    name = "http"
    retrieval_source = "the reply's citations only (a server does not say what it retrieved)"

    def __init__(self, base_url: str, timeout_s: float = 60.0, max_rate_limit_waits: int = 10) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.max_rate_limit_waits = max_rate_limit_waits
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def describe(self) -> dict[str, Any]:
        return {"target": f"{self.base_url}/api/chat"}

    def chat(self, message: str, history: Sequence[Message]) -> tuple[Answer, float]:
        """POST one message with its history: the reply (the Answer contract) and the seconds it took.

        A 429 (rate limit) is waited out as the server's Retry-After says, and the wait is not counted as
        latency: the evaluation measures answers, not the limiter."""
        import httpx

        body = {"message": message, "history": [m.model_dump() for m in history]}
        for _attempt in range(self.max_rate_limit_waits + 1):
            started = time.perf_counter()
            try:
                response = self._client.post("/api/chat", json=body)
            except httpx.ConnectError as exc:
                raise ConfigurationError(
                    f"Cannot reach {self.base_url} ({exc}). "
                    "Start the server (bpd-rag serve) or check the --against URL."
                ) from exc
            elapsed = time.perf_counter() - started
            if response.status_code != 429:
                break
            time.sleep(min(_retry_after(response.headers.get("retry-after")), 60.0))
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return Answer.model_validate(response.json()), elapsed

    def observe(self, item: GoldItem, spans: Sequence[Span]) -> Observation:
        try:
            answer, latency = self.chat(item.question, item.history)
        except FATAL_ERRORS:
            raise
        # Broad on purpose, as in _timed_ask: a failing question is a finding to report.
        except Exception as exc:
            return Observation(error=f"{type(exc).__name__}: {exc}", retrieved=[])
        cited = [
            Retrieved(doc_id=c.doc_id, chunk_id=c.chunk_id, start=c.start, end=c.start + len(c.quote))
            for c in answer.citations
            if c.start is not None
        ]
        return Observation(answer=answer, latency_s=latency, retrieved=cited)

    def close(self) -> None:
        self._client.close()


class BaselineTarget:
    """The plain LangChain recipe (bpd_rag.evaluation.baseline)."""

    name = "baseline"
    retrieval_source = "the baseline's Chroma similarity search on the raw message"

    def __init__(self, baseline: BaselinePipeline) -> None:
        self.baseline = baseline

    def describe(self) -> dict[str, Any]:
        return {
            "target": "LangChain baseline (1000/200 character chunks, Chroma top 4, extractive answerer)",
            "safety_layer": False,
            "top_k": self.baseline.k,
        }

    def observe(self, item: GoldItem, spans: Sequence[Span]) -> Observation:
        answer, error, latency = _timed_ask(self.baseline.ask, item)
        return Observation(
            answer=answer,
            error=error,
            latency_s=latency,
            retrieved=_refs(self.baseline.retrieve(item.question)),
            query=item.question,
        )
