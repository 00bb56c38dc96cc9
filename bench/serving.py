"""A real `bpd-rag serve` process: cold start, per-request latency, streaming, load at 1/8/32 clients, peak RSS.

One repetition starts a fresh server, so each repetition also measures the cold start and the crisis
cache has never seen the measured questions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BenchEnv,
    Question,
    QuestionSet,
    ServerProcess,
    log,
    server_durations_ms,
    summarise_ms,
    unique_bodies,
)


@dataclass(frozen=True)
class LoadLevel:
    """One load step: concurrent clients, at most this many requests, for at most this many seconds."""

    clients: int
    max_requests: int
    max_seconds: float


DEFAULT_LEVELS = (LoadLevel(1, 60, 15.0), LoadLevel(8, 240, 20.0), LoadLevel(32, 480, 25.0))
REQUEST_TIMEOUT_S = 60.0


def sequential_latency(
    base_url: str, questions: list[Question], rep: int
) -> tuple[dict[str, float], list[str], Counter[str], int]:
    """One request at a time on a keep-alive connection; client-side seconds per request id."""
    client_s: dict[str, float] = {}
    ids: list[str] = []
    kinds: Counter[str] = Counter()
    errors = 0
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for i, question in enumerate(questions):
            request_id = f"bench-r{rep}-q{i}"
            started = time.perf_counter()
            response = client.post("/api/chat", json=question.body(), headers={"X-Request-ID": request_id})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors += 1
                continue
            kinds[response.json()["kind"]] += 1
            client_s[request_id] = elapsed
            ids.append(request_id)
    return client_s, ids, kinds, errors


def stream_first_event(base_url: str, questions: list[Question]) -> tuple[list[float], list[float], int]:
    """POST /api/chat/stream: seconds to the first SSE event and to the end of the stream, per question."""
    first: list[float] = []
    total: list[float] = []
    errors = 0
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for question in questions:
            started = time.perf_counter()
            seen_first = False
            with client.stream("POST", "/api/chat/stream", json=question.body()) as response:
                if response.status_code != 200:
                    errors += 1
                    continue
                for line in response.iter_lines():
                    if line.startswith("event:") and not seen_first:
                        first.append(time.perf_counter() - started)
                        seen_first = True
            total.append(time.perf_counter() - started)
    return first, total, errors


async def _load_level(base_url: str, bodies: list[dict[str, Any]], level: LoadLevel, start: int) -> dict[str, Any]:
    """Closed loop: `clients` workers each send one request after another until the count or time runs out.

    Request i sends bodies[start + i]: no message repeats within one server's load test, so every answer
    pays for the crisis check and the query embedding (nothing comes from a per-message cache).
    """
    latencies: list[tuple[float, float]] = []  # (start offset, seconds)
    errors: Counter[str] = Counter()
    issued = 0
    limits = httpx.Limits(max_connections=level.clients, max_keepalive_connections=level.clients)
    started = time.perf_counter()
    deadline = started + level.max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < level.max_requests and time.perf_counter() < deadline:
            body = bodies[(start + issued) % len(bodies)]
            issued += 1
            t0 = time.perf_counter()
            try:
                response = await client.post("/api/chat", json=body)
                if response.status_code == 200:
                    latencies.append((t0 - started, time.perf_counter() - t0))
                else:
                    errors[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                errors[exc.__class__.__name__] += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(level.clients)))
    wall = time.perf_counter() - started
    ordered = [s for _, s in sorted(latencies)]
    half = len(ordered) // 2
    first_half = summarise_ms(ordered[:half])["p50"] if half else float("nan")
    second_half = summarise_ms(ordered[half:])["p50"] if half else float("nan")
    return {
        "clients": level.clients,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": wall,
        "throughput": len(latencies) / wall if wall else 0.0,
        "latency": summarise_ms([s for _, s in latencies]),
        # Unbounded growth would show as the second half of a level being much slower than the first.
        "drift": second_half / first_half if first_half else float("nan"),
    }


def load_test(base_url: str, questions: list[Question], levels: tuple[LoadLevel, ...]) -> list[dict[str, Any]]:
    """Each level in turn against the same server, every request a message the server has not seen."""
    bodies = unique_bodies(questions)
    out = []
    start = 0
    for level in levels:
        out.append(asyncio.run(_load_level(base_url, bodies, level, start)))
        start += level.max_requests
    return out


def serving_rep(
    bench_env: BenchEnv,
    questions: QuestionSet,
    rep: int,
    levels: tuple[LoadLevel, ...],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start a server, time its first answer, warm it, measure latency, streaming and load; stop it."""
    server = ServerProcess(bench_env, bench_env.root / f"server-{rep}.log", extra_env)
    server.start()
    try:
        # The cold-start probe is a warm-up question: the measured ones stay unseen by the crisis cache.
        cold_start = server.first_answer(questions.warmup[0].body(), request_id=f"bench-r{rep}-cold")
        memory_ready = server.memory()
        with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            for question in questions.warmup[1:]:
                client.post("/api/chat", json=question.body())
        client_s, ids, kinds, errors = sequential_latency(server.base_url, questions.measured, rep)
        log(f"rep {rep}: sequential latency done, streaming")
        first, total, stream_errors = stream_first_event(server.base_url, questions.stream)
        load: list[dict[str, Any]] = []
        if levels:
            log(f"rep {rep}: load {', '.join(str(level.clients) for level in levels)} clients")
            load = load_test(server.base_url, questions.measured, levels)
        memory_end = server.memory()
    finally:
        server.stop()
    durations = server_durations_ms(server.log())
    answer_ms = _answer_ms(server.log())
    server_s = [durations[i] / 1000.0 for i in ids if i in durations]
    pipeline_s = [answer_ms[i] / 1000.0 for i in ids if i in answer_ms]
    answerable = {f"bench-r{rep}-q{i}" for i, q in enumerate(questions.measured) if q.expected_kind == "answer"}
    first_request_ms = durations.get(f"bench-r{rep}-cold", float("nan"))
    return {
        "cold_start_s": cold_start,
        # How the cold start splits: starting (imports, model, index) and the first answer itself.
        "first_request_ms": first_request_ms,
        "rss_ready_mb": memory_ready.get("VmRSS", float("nan")),
        "peak_rss_mb": memory_end.get("VmHWM", float("nan")),
        "server": summarise_ms(server_s),
        "server_answerable": summarise_ms([durations[i] / 1000.0 for i in ids if i in answerable and i in durations]),
        "server_pipeline": summarise_ms(pipeline_s),
        "client": summarise_ms(list(client_s.values())),
        "kinds": dict(kinds),
        "errors": errors,
        "logged": len(server_s),
        "stream_first_event": summarise_ms(first),
        "stream_total": summarise_ms(total),
        "stream_errors": stream_errors,
        "load": load,
    }


def _answer_ms(log_text: str) -> dict[str, float]:
    """request id -> answer_ms (Pipeline.ask in the worker thread) from the server's log lines."""
    out: dict[str, float] = {}
    for line in log_text.splitlines():
        if "request_id=" in line and "answer_ms=" in line:
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            out[fields["request_id"]] = float(fields["answer_ms"])
    return out


def save_raw(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
