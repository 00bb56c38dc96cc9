"""The quality gate of `make test`: the test split of the gold sets (gold-style and patient-worded questions, never
tuned on) through the offline pipeline (packaged MiniLM, embedded
Chroma in a temporary folder), then every minimum and maximum in eval/thresholds.toml.

The pipeline comes from build_pipeline, as the CLI and the server build it, so whatever build_pipeline
attaches (the safety layer) is measured; conftest's `real_pipeline` builds a bare Pipeline, so it is not
reused here. A failing metric is named with its value and bound; `bpd-rag eval` writes the full report.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.evaluation.runner import EvalRun, default_scorer, evaluate, load_items, scoring_context
from bpd_rag.evaluation.scoring import METRICS
from bpd_rag.evaluation.targets import PipelineTarget
from bpd_rag.evaluation.thresholds import check_thresholds, load_thresholds
from bpd_rag.pipeline import build_pipeline
from tests.conftest import CORPUS, ROOT, make_settings

GOLD = [ROOT / "eval" / "gold.jsonl", ROOT / "eval" / "patient.jsonl"]
THRESHOLDS = ROOT / "eval" / "thresholds.toml"


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder) -> EvalRun:
    settings = make_settings(tmp_path_factory.mktemp("gate"), CORPUS, backend="sentence-transformers")
    pipeline = build_pipeline(settings, real_embedder)
    pipeline.ingest()
    ctx = scoring_context(settings, default_scorer(real_embedder), safety_layer=pipeline.guard is not None)
    return evaluate(load_items(GOLD, split="test"), PipelineTarget(pipeline), ctx)


@pytest.mark.real_model
def test_every_metric_meets_its_threshold(offline_run: EvalRun) -> None:
    limits = load_thresholds(THRESHOLDS, known=[*METRICS, "items"])
    results = check_thresholds(offline_run.overall, limits)
    failed = [r for r in results if not r.ok]
    steps = Counter((s.stage or "").split(":")[0] for s in offline_run.failures)
    print("\n".join(r.describe() for r in results))  # shown with -s, and by -ra's summary on failure
    assert not failed, (
        f"{len(failed)} metric(s) miss their bound in {THRESHOLDS.relative_to(ROOT)}:\n  "
        + "\n  ".join(r.describe() for r in failed)
        + f"\nFailing items by step: {dict(steps.most_common())}. "
        "Run `bpd-rag eval` for the report with every failing item and why."
    )


@pytest.mark.real_model
def test_every_gold_item_was_answered_without_error(offline_run: EvalRun) -> None:
    assert offline_run.overall["items"] == len(load_items(GOLD, split="test"))
    errors = {s.id: s.error for s in offline_run.scores if s.error}
    assert not errors
