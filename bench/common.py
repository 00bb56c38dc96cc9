"""Shared pieces of the benchmarks: statistics, the question set, temp environments and server processes."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "eval" / "gold.jsonl"
CORPUS = ROOT / "corpus"

MEASURED_ANSWERABLE = 30
MEASURED_NO_ANSWER = 3
MEASURED_CRISIS = 3
WARMUP = 20
STREAMED = 12


# --- statistics --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and mean in milliseconds of durations given in seconds, with the count."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": float(len(ms)),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else math.nan,
    }


def median_dicts(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Key by key, the median of numbers over several runs (nested dicts recursively; other values from run 1)."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs if key in r]
        if isinstance(first, bool) or not values:
            out[key] = first
        elif isinstance(first, int | float):
            numbers = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(float(v))]
            out[key] = statistics.median(numbers) if numbers else math.nan
        elif isinstance(first, dict):
            out[key] = median_dicts([v for v in values if isinstance(v, dict)])
        else:
            out[key] = first
    return out


def run_worker(
    module: str,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Run `python -m <module> <args>` in a fresh interpreter; the JSON on its last line of output."""
    base = dict(os.environ if env is None else env)
    # The bench package from this checkout; an outer PYTHONPATH (another bpd_rag source) stays first.
    python_path = os.pathsep.join(p for p in (base.get("PYTHONPATH"), str(ROOT)) if p)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**base, "PYTHONPATH": python_path},
        cwd=cwd,
        capture_output=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def raw_encode(embedder: Any, texts: Sequence[str]) -> None:
    """The model alone on texts: no query cache, no conversion to lists (the floor and the raw encoder)."""
    encode = getattr(embedder, "encode", None)
    if encode is not None:
        encode(list(texts))
    else:  # a src from before SentenceTransformerEmbedder.encode (for the before/after runs)
        embedder._model.encode(list(texts), batch_size=embedder.batch_size, normalize_embeddings=True)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (how busy the shared machine is)."""
    return os.getloadavg()


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS of a process, in MiB, from /proc/<pid>/status."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for key in ("VmHWM", "VmRSS"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if match:
            out[key] = int(match.group(1)) / 1024.0
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --- the question set --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    expected_kind: str
    history: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        """The JSON body of POST /api/chat for this question."""
        return {"message": self.text, "history": [{"role": r, "content": c} for r, c in self.history]}


@dataclass
class QuestionSet:
    measured: list[Question]
    warmup: list[Question] = field(default_factory=list)
    stream: list[Question] = field(default_factory=list)  # new to the server when the stream is timed


# Natural openers and closers that make every load-test message new to the server's caches.
OPENERS = ("", "Hi. ", "Hello, ", "Quick question: ", "I was wondering: ", "Can you tell me: ", "Another one: ")
CLOSERS = ("", " Thanks.", " Thank you!", " Cheers.", " Thanks a lot.")


def unique_bodies(questions: Sequence[Question]) -> list[dict[str, Any]]:
    """Every question with every opener and closer but the bare question (34 new messages per question)."""
    return [
        {"message": f"{opener}{q.text}{closer}", "history": []}
        for opener in OPENERS
        for closer in CLOSERS
        if opener or closer
        for q in questions
    ]


def question_set(path: Path = GOLD) -> QuestionSet:
    """30 answerable single-turn questions, 3 no-answer and 3 crisis ones from the gold set, in file order.

    The warm-up questions are other gold items (answerable and advice), so the measured ones meet a
    server whose sentence cache is filled as it would be after some traffic, but whose per-message
    caches (crisis check, query vector) have never seen them; the streamed ones are further answerable
    items, new to the server when they are streamed.
    """
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def make(item: dict[str, Any]) -> Question:
        history = tuple((m["role"], m["content"]) for m in item.get("history", []))
        return Question(item["id"], item["question"], item["expected_kind"], history)

    single = [i for i in items if not i.get("history")]
    answerable = [i for i in single if i["expected_kind"] == "answer"]
    no_answer = [i for i in single if i["expected_kind"] == "no_answer"]
    crisis = [i for i in single if i["expected_kind"] == "crisis"]
    measured = answerable[:MEASURED_ANSWERABLE] + no_answer[:MEASURED_NO_ANSWER] + crisis[:MEASURED_CRISIS]
    chosen = {i["id"] for i in measured}
    rest = [i for i in single if i["id"] not in chosen and i["expected_kind"] in ("answer", "refusal")]
    stream = [i for i in answerable[MEASURED_ANSWERABLE:] if i not in rest[:WARMUP]][:STREAMED]
    return QuestionSet([make(i) for i in measured], [make(i) for i in rest[:WARMUP]], [make(i) for i in stream])


# --- a temporary deployment ---------------------------------------------------------------------------


@dataclass
class BenchEnv:
    """A scratch folder with its own index and feedback database; nothing touches the developer's .bpd_rag."""

    root: Path
    corpus_dir: Path = CORPUS

    @property
    def index_path(self) -> Path:
        return self.root / "index"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for `bpd-rag` subprocesses: this index, no rate limit (benchmark traffic is one IP)."""
        return {
            **os.environ,
            "BPD_RAG_CORPUS_DIR": str(self.corpus_dir),
            "BPD_RAG_STORE__PATH": str(self.index_path),
            "BPD_RAG_API__FEEDBACK_DB": str(self.root / "feedback.sqlite3"),
            "BPD_RAG_API__RATE_LIMIT_PER_MINUTE": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **extra,
        }

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "corpus_dir": self.corpus_dir,
            "store": {"path": self.index_path},
            "api": {"feedback_db": self.root / "feedback.sqlite3", "rate_limit_per_minute": 0},
        }


def bpd_rag_command() -> str:
    """The `bpd-rag` console script of this virtualenv."""
    return str(Path(sys.executable).with_name("bpd-rag"))


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the process by its PID, then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class ServerProcess:
    """`bpd-rag serve` on 127.0.0.1 and a free port, its log in a file, stopped by its PID."""

    def __init__(self, bench_env: BenchEnv, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = bench_env.env(**(extra_env or {}))
        self.cwd = bench_env.root
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        argv = [bpd_rag_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(argv, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT)

    def first_answer(self, body: dict[str, Any], request_id: str = "", timeout_s: float = 120.0) -> float:
        """Poll POST /api/chat until it answers 200; seconds from process start to that answer."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        headers = {"X-Request-ID": request_id} if request_id else {}
        with httpx.Client(timeout=30.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"bpd-rag serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
                try:
                    if client.post(f"{self.base_url}/api/chat", json=body, headers=headers).status_code == 200:
                        return time.perf_counter() - self.started_at
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"{self.base_url}/api/chat did not answer within {timeout_s}s:\n{self.log()[-3000:]}")

    def memory(self) -> dict[str, float]:
        return proc_memory_mb(self.process.pid) if self.process is not None else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self._log.close()


_LOG_LINE = re.compile(r"request_id=(\S+) method=\S+ path=\S+ status=(\d+) duration_ms=([\d.]+)")


def server_durations_ms(log_text: str) -> dict[str, float]:
    """request id -> duration_ms from the server's own log line (RequestContextMiddleware's timing)."""
    return {m.group(1): float(m.group(3)) for m in _LOG_LINE.finditer(log_text)}


@contextmanager
def chroma_server(path: Path, log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`chroma run` on 127.0.0.1 over a folder, stopped by its PID; yields (url, process)."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        raise RuntimeError("the `chroma` command (from the chromadb package) is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chroma run did not start: {log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield url, process
        finally:
            stop_process(process)


def log(message: str) -> None:
    """Progress on stderr, with the time and load, so a long run shows where it is."""
    load = os.getloadavg()[0]
    print(f"[bench {time.strftime('%H:%M:%S')} load {load:.2f}] {message}", file=sys.stderr, flush=True)
