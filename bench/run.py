"""Run every benchmark and write docs/benchmarks.md with its plots (`make bench`, or `python -m bench`).

Sections: serving (latency next to the embedding floor and the LangChain baseline, load, streaming,
server cold start and peak RSS), coldstart (`bpd-rag ask`), ingest, scale. Each figure is the median of
--reps repetitions; ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import lc_baseline
from bench.coldstart import ask_wall_s, breakdown_subprocess
from bench.common import ROOT, BenchEnv, load_average, log, median_dicts, question_set
from bench.ingest_bench import SCALED_DOCS, ingest_rep, write_scaled_corpus
from bench.inprocess import inprocess_subprocess, server_model_threads
from bench.report import write_report
from bench.scale import SCALE_CACHE, SIZES, scale_benchmark
from bench.serving import DEFAULT_LEVELS, LoadLevel, serving_rep

SECTIONS = ("serving", "coldstart", "ingest", "scale")
# Raw results of the src before each round of fixes, oldest first (docs/benchmarks.md compares with them).
BEFORE_FILES = (ROOT / "bench" / "results-before-fixes.json", ROOT / "bench" / "results-before-round2.json")
QUICK_LEVELS = (LoadLevel(1, 20, 5.0), LoadLevel(8, 60, 8.0), LoadLevel(32, 120, 10.0))


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    import bpd_rag

    source = Path(bpd_rag.__file__).resolve().parent
    return {
        "bpd_rag_source": str(source),
        "bpd_rag_commit": _git(["describe", "--always", "--dirty"], source),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "commit": _git(["rev-parse", "--short", "HEAD"], ROOT),
    }


def _git(args: list[str], cwd: Path) -> str:
    """What git prints for args in cwd ("" when git or the repository is missing)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _serving(
    bench_env: BenchEnv, settings: Any, embedder: Any, reps: int, levels: tuple[LoadLevel, ...]
) -> dict[str, Any]:
    questions = question_set()
    source = lc_baseline.source()
    inprocess: list[dict[str, Any]] = []
    serving: list[dict[str, Any]] = []
    for rep in range(reps):
        log(f"serving rep {rep + 1}/{reps}: in-process floor / pipeline / baseline")
        inprocess.append(inprocess_subprocess(bench_env))
        log(f"serving rep {rep + 1}/{reps}: bpd-rag serve")
        serving.append(serving_rep(bench_env, questions, rep, levels))
    load_runs = [run["load"] for run in serving]
    load = [median_dicts([levels_run[i] for levels_run in load_runs]) for i in range(len(levels))]
    for i, level in enumerate(load):
        level["errors_total"] = sum(run[i]["errors"] for run in load_runs)
    return {
        "questions": {
            "measured": len(questions.measured),
            "answerable": sum(q.expected_kind == "answer" for q in questions.measured),
            "no_answer": sum(q.expected_kind == "no_answer" for q in questions.measured),
            "crisis": sum(q.expected_kind == "crisis" for q in questions.measured),
            "warmup": len(questions.warmup),
        },
        "baseline_source": source,
        "inprocess": median_dicts(inprocess),
        "server": median_dicts([{k: v for k, v in run.items() if k != "load"} for run in serving]),
        "cold_start_runs": [run["cold_start_s"] for run in serving],
        "peak_rss_runs": [run["peak_rss_mb"] for run in serving],
        "errors_total": sum(run["errors"] + run["stream_errors"] for run in serving),
        "load": load,
        "runs": {"inprocess": inprocess, "serving": serving},
    }


def _coldstart(bench_env: BenchEnv, reps: int) -> dict[str, Any]:
    question = "What dose of ketamine was used in the pilot trial?"
    walls = []
    for rep in range(reps):
        log(f"cold start: bpd-rag ask {rep + 1}/{reps}")
        walls.append(ask_wall_s(bench_env, question))
    # One breakdown is enough to see where the time goes; the wall times above are the figures.
    breakdown = breakdown_subprocess(bench_env, question)
    return {"ask_wall_runs": walls, "ask_wall_s": statistics.median(walls), "breakdown": breakdown}


def _ingest(
    settings: Any, embedder: Any, workdir: Path, reps: int, scaled_reps: int, scaled_docs: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    scaled = write_scaled_corpus(workdir / "scaled-corpus", scaled_docs)
    for name, corpus_dir, repeat in (("corpus", settings.corpus_dir, reps), ("scaled", scaled, scaled_reps)):
        runs = []
        for rep in range(repeat):
            log(f"ingest {name} {rep + 1}/{repeat}")
            run_settings = settings.model_copy(update={"corpus_dir": corpus_dir})
            runs.append(ingest_rep(run_settings, embedder, workdir / f"ingest-{name}-{rep}"))
        out[name] = {**median_dicts(runs), "runs": runs}
    return out


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="Markdown report")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (medians reported)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="1 repetition, small sizes: for trying the harness")
    parser.add_argument("--json", type=Path, default=ROOT / ".bpd_rag" / "bench" / "results.json", help="raw results")
    parser.add_argument(
        "--before",
        type=Path,
        action="append",
        help="raw results of an earlier src to compare (repeatable; default: bench/results-before-*.json)",
    )
    parser.add_argument(
        "--scaled-reps",
        type=int,
        default=1,
        help="repetitions of the scaled-corpus ingest (about 2 minutes each; its ratio is taken within each run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (indexes, server logs)")
    parser.add_argument(
        "--no-cache", action="store_true", help=f"rebuild the synthetic scale indexes (kept in {SCALE_CACHE})"
    )
    parser.add_argument("--label", default="", help="what this run measures, e.g. 'before the fixes: src of abc123'")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    reps = 1 if args.quick else args.reps
    scaled_reps = 1 if args.quick else args.scaled_reps
    levels = QUICK_LEVELS if args.quick else DEFAULT_LEVELS
    sizes = SIZES[:2] if args.quick else SIZES
    scaled_docs = 200 if args.quick else SCALED_DOCS

    from bpd_rag.embeddings import SentenceTransformerEmbedder
    from bpd_rag.pipeline import build_pipeline
    from bpd_rag.settings import Settings

    started = time.time()
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_start": load_average(),
            "reps": reps,
            "scaled_reps": scaled_reps,
            "quick": args.quick,
            "sections": sections,
            "label": args.label,
            **_machine(),
        }
    }
    log(f"load average at start: {results['meta']['load_start']}")
    workdir = Path(tempfile.mkdtemp(prefix="bpd-rag-bench-"))
    try:
        bench_env = BenchEnv(workdir)
        settings = Settings(_env_file=None, **bench_env.settings_overrides())  # type: ignore[call-arg]
        results["meta"]["server_model_threads"] = server_model_threads(settings)
        log("loading the model and building the benchmark index")
        embedder = SentenceTransformerEmbedder()
        build_pipeline(settings, embedder).ingest()
        phase_load: dict[str, Any] = {}
        results["meta"]["phase_load"] = phase_load
        runners = {
            "serving": lambda: _serving(bench_env, settings, embedder, reps, levels),
            "coldstart": lambda: _coldstart(bench_env, reps),
            "ingest": lambda: _ingest(settings, embedder, workdir, reps, scaled_reps, scaled_docs),
            "scale": lambda: scale_benchmark(workdir, sizes, cache=None if args.no_cache else SCALE_CACHE),
        }
        for section in SECTIONS:
            if section in sections:
                phase_load[section] = load_average()
                results[section] = runners[section]()
                _save(args.json, results)  # a later failure keeps what was measured
    finally:
        if args.keep:
            log(f"scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["load_end"] = load_average()
    results["meta"]["duration_s"] = time.time() - started
    _save(args.json, results)
    paths = args.before if args.before is not None else BEFORE_FILES
    befores = [(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p), _read(p)) for p in paths if p.exists()]
    write_report(results, args.out, befores)
    log(f"done in {results['meta']['duration_s']:.0f} s: {args.out} (raw results {args.json})")


if __name__ == "__main__":
    main()
