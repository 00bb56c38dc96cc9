"""The benchmark harness' helpers (bench/): statistics, question set, scaled corpus, log parsing, report.

No timing is asserted here: speed is measured by `make bench`, never by tests.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from bench.common import median_dicts, percentile, question_set, server_durations_ms, summarise_ms
from bench.ingest_bench import write_scaled_corpus
from bench.report import knee_text, targets, write_report

from bpd_rag.corpus import load_corpus


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_summaries_are_in_milliseconds_and_medians_nest() -> None:
    stats = summarise_ms([0.010, 0.020, 0.030])
    assert stats["p50"] == pytest.approx(20.0) and stats["n"] == 3
    runs = [{"a": 1.0, "b": {"c": 10.0}, "name": "x"}, {"a": 3.0, "b": {"c": 30.0}}, {"a": 2.0, "b": {"c": 5.0}}]
    assert median_dicts(runs) == {"a": 2.0, "b": {"c": 10.0}, "name": "x"}


def test_server_log_lines_are_matched_by_request_id() -> None:
    log = (
        "2026-01-01 INFO bpd_rag.api request_id=bench-r0-q1 method=POST path=/api/chat status=200 "
        "duration_ms=12.5 kind=answer answer_ms=10.0\n"
        "2026-01-01 INFO bpd_rag.api request_id=abc method=GET path=/healthz status=200 duration_ms=0.4\n"
    )
    assert server_durations_ms(log) == {"bench-r0-q1": 12.5, "abc": 0.4}


def test_question_set_is_fixed_and_warmup_is_disjoint() -> None:
    questions = question_set()
    kinds = [q.expected_kind for q in questions.measured]
    assert kinds.count("answer") == 30 and kinds.count("no_answer") == 3 and kinds.count("crisis") == 3
    assert not {q.id for q in questions.measured} & {q.id for q in questions.warmup}
    assert questions.warmup and all(not q.history for q in questions.measured)
    assert question_set() == questions  # the same questions every run


def test_scaled_corpus_is_a_loadable_recombination_of_corpus_paragraphs(tmp_path: Path) -> None:
    folder = write_scaled_corpus(tmp_path / "scaled", n_docs=12)
    loaded = load_corpus(folder)
    assert len(loaded.documents) == 12 and not loaded.errors
    corpus_text = " ".join(d.text for d in load_corpus(Path("corpus")).documents)
    first_paragraph = loaded.documents[1].text.split("\n\n")[0]
    assert first_paragraph in corpus_text


def _fake_results(p50: float, floor: float, errors: int = 0) -> dict[str, Any]:
    stats = {"n": 36.0, "p50": p50, "p95": p50 * 2, "p99": p50 * 3, "mean": p50}
    floor_stats = {"n": 36.0, "p50": floor, "p95": floor, "p99": floor, "mean": floor}
    level = {
        "clients": 1,
        "requests": 10,
        "errors": errors,
        "errors_total": errors,
        "seconds": 1.0,
        "throughput": 10.0,
        "latency": stats,
        "drift": 1.0,
    }
    scale_row = {
        "size": 1000,
        "build": {"add_per_s": 1000.0},
        "embedded": {
            "vector_query": stats,
            "bm25_top": stats,
            "retrieve": stats,
            "passages_for": stats,
            "snapshot_s": 0.1,
            "rss_mb": {"start": 50.0, "after_vector_queries": 60.0, "after_snapshot": 70.0, "peak": 80.0},
        },
    }
    scale_row["server"] = {**scale_row["embedded"], "chroma_server_rss_mb": {"VmHWM": 100.0}}  # type: ignore[dict-item]
    big_row = {**scale_row, "size": 10_000}
    return {
        "meta": {
            "started": "now",
            "load_start": [0.5, 0.5, 0.5],
            "load_end": [0.5, 0.5, 0.5],
            "reps": 3,
            "cpus": 2,
            "cpu": "cpu",
            "memory_gib": 24,
            "python": "3.11",
            "torch_threads": 2,
            "duration_s": 60.0,
        },
        "serving": {
            "questions": {"measured": 36, "answerable": 30, "no_answer": 3, "crisis": 3, "warmup": 20},
            "baseline_source": "test",
            "inprocess": {
                "floor": floor_stats,
                "pipeline": stats,
                "pipeline_answerable": stats,
                "baseline": stats,
                "baseline_answerable": stats,
            },
            "server": {
                "server": stats,
                "server_answerable": stats,
                "server_pipeline": stats,
                "client": stats,
                "kinds": {"answer": 30},
                "cold_start_s": 4.0,
                "rss_ready_mb": 500.0,
                "peak_rss_mb": 600.0,
                "stream_first_event": stats,
                "stream_total": stats,
            },
            "cold_start_runs": [4.0],
            "peak_rss_runs": [600.0],
            "errors_total": 0,
            "load": [level, {**level, "clients": 8}, {**level, "clients": 32}],
        },
        "scale": [scale_row, big_row],
    }


def test_targets_say_met_or_missed_from_the_figures() -> None:
    met = {t[0]: t[2] for t in targets(_fake_results(p50=20.0, floor=8.0))}
    assert met["answer p50 within 3x the query-embedding floor"] == "**met**"
    assert met["answer p50 at or below 40 ms"] == "**met**"
    missed = {t[0]: t[2] for t in targets(_fake_results(p50=50.0, floor=8.0, errors=2))}
    assert missed["answer p50 within 3x the query-embedding floor"] == "**missed**"
    assert missed["answer p50 at or below 40 ms"] == "**missed**"
    assert missed["load: zero errors, no unbounded latency growth"] == "**missed**"


def test_report_has_tables_and_plots(tmp_path: Path) -> None:
    results = _fake_results(p50=20.0, floor=8.0)
    slower = _fake_results(p50=30.0, floor=8.0)
    befores = [("one.json", slower), ("two.json", results), ("three.json", slower)]
    write_report(results, tmp_path / "benchmarks.md", befores=befores)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| 32 |" in text and "Load average at the start: 0.50" in text
    assert "| figure | before the first round | before the second round | before the third round | now |" in text
    assert "`one.json`" in text and "`two.json`" in text
    for name in ("latency", "load", "scale"):
        assert (tmp_path / f"benchmarks-{name}.png").stat().st_size > 1000


def test_the_knee_is_the_first_size_over_the_retrieval_budget() -> None:
    rows = _fake_results(p50=20.0, floor=8.0)["scale"]

    def at(*p50s: float) -> list[dict[str, Any]]:
        out = []
        for size, p50 in zip((1_000, 10_000, 100_000), p50s, strict=True):
            stats = {**rows[0]["embedded"]["passages_for"], "p50": p50}
            out.append({**rows[0], "size": size, "embedded": {**rows[0]["embedded"], "passages_for": stats}})
        return out

    assert knee_text(at(1.0, 3.0, 30.0)).startswith("The knee is at 100,000 chunks")
    assert "no knee up to 100,000 chunks" in knee_text(at(1.0, 2.0, 4.0))
