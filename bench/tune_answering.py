"""Sweep the extractive answerer's minimum sentence score on the gold set's answer/no_answer items.

Run: .venv/bin/python bench/tune_answering.py [--out docs/tuning-answering.md]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.evaluation.gold import load_gold
from bpd_rag.pipeline import Pipeline
from bpd_rag.settings import Settings
from bpd_rag.store import MemoryStore
from bpd_rag.types import Question

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = {"fact", "conflict", "unanswerable", "off_topic", "misspelled", "multi_turn", "false_premise", "risk_info"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--scores", default="0.30,0.34,0.38,0.42,0.46,0.50")
    args = parser.parse_args()
    settings = Settings(_env_file=None, corpus_dir=ROOT / "corpus")  # type: ignore[call-arg]
    pipeline = Pipeline(settings, SentenceTransformerEmbedder(), store=MemoryStore())
    pipeline.ingest()
    items = [i for i in load_gold(ROOT / "eval" / "gold.jsonl") if i.category in CATEGORIES]
    prepared = []
    for item in items:
        query, passages = pipeline.passages_for(item.question, item.history)
        prepared.append((item, query, passages))
    rows = [
        "| min score | answerable answered | no-answer kept silent | required phrases found | wrong kind |",
        "|---|---|---|---|---|",
    ]
    for threshold in (float(s) for s in args.scores.split(",")):
        pipeline.extractive.min_score = threshold
        answered, silent, phrases, wrong = [], [], [], []
        for item, query, passages in prepared:
            question = Question(text=item.question, history=item.history, query=query)
            answer = pipeline.extractive.answer(question, passages)
            (answered if item.expected_kind == "answer" else silent).append(answer.kind == item.expected_kind)
            if answer.kind != item.expected_kind:
                wrong.append(item.id)
            if item.expected_kind == "answer":
                text = answer.answer.lower()
                for group in item.must_contain:
                    phrases.append(any(p.lower() in text for p in group))
        rows.append(
            f"| {threshold:.2f} | {statistics.mean(answered):.3f} ({len(answered)}) | {statistics.mean(silent):.3f} "
            f"({len(silent)}) | {statistics.mean(phrases):.3f} | {len(wrong)} |"
        )
        print(rows[-1], "wrong:", " ".join(wrong), flush=True)
    if args.out:
        args.out.write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
