"""Prometheus metrics of one app (its own registry, so several apps in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Request counts and latencies per route, answers per kind, rate-limited requests."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bpd_rag_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bpd_rag_http_request_duration_seconds",
            "Time from request to the end of the response (the whole stream for SSE), by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "bpd_rag_answers", "Replies by kind (answer, no_answer, crisis, refusal).", ["kind"], registry=self.registry
        )
        self.answer_latency = Histogram(
            "bpd_rag_answer_duration_seconds",
            "Time the pipeline took to answer one question.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "bpd_rag_rate_limited_requests", "Requests refused with 429 by the rate limit.", registry=self.registry
        )

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
