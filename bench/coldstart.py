"""Cold start of `bpd-rag ask`: wall time of the whole command, and where that time goes.

`python -m bench.coldstart` (the breakdown) runs in a fresh process and prints JSON; the benchmark runner
calls it as a subprocess, like it calls `bpd-rag ask`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.common import BenchEnv, bpd_rag_command, run_worker


def ask_wall_s(bench_env: BenchEnv, question: str) -> float:
    """Seconds from starting `bpd-rag ask --json` to its exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(
        [bpd_rag_command(), "ask", "--json", question],
        env=bench_env.env(),
        cwd=bench_env.root,
        capture_output=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"bpd-rag ask failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    json.loads(done.stdout)  # a real answer came back
    return elapsed


def breakdown_subprocess(bench_env: BenchEnv, question: str) -> dict[str, float]:
    """The stages of a cold `ask`, timed inside a fresh interpreter."""
    return run_worker("bench.coldstart", [question], env=bench_env.env(), cwd=bench_env.root, timeout_s=120)


def _breakdown(question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import bpd_rag.cli  # noqa: F401 - what `bpd-rag` imports before it does anything

    t1 = time.perf_counter()
    from bpd_rag.embeddings import build_embedder
    from bpd_rag.pipeline import build_pipeline
    from bpd_rag.settings import Settings

    settings = Settings()
    embedder = build_embedder(settings.embedding)
    t2 = time.perf_counter()
    pipeline = build_pipeline(settings, embedder)
    t3 = time.perf_counter()
    pipeline.retriever.snapshot()
    t4 = time.perf_counter()
    pipeline.ask(question)
    t5 = time.perf_counter()
    return {
        "import_s": t1 - t0,
        "model_load_s": t2 - t1,
        "pipeline_build_s": t3 - t2,
        "index_load_s": t4 - t3,
        "first_answer_s": t5 - t4,
        "in_process_total_s": t5 - t0,
    }


if __name__ == "__main__":
    print(json.dumps(_breakdown(sys.argv[1])))
