"""Sweep chunk size, fusion and k on the gold set's answerable items; prints a Markdown table.

Run: .venv/bin/python bench/tune_retrieval.py [--out docs/tuning.md]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.evaluation.gold import load_gold
from bpd_rag.evaluation.retrieval_metrics import first_hit_rank, locate_quotes, recall
from bpd_rag.index import ingest
from bpd_rag.retrieval import Retriever, resolve_query
from bpd_rag.settings import RetrievalSettings
from bpd_rag.store import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
FUSIONS = {
    "dense only": (1.0, 0.0),
    "bm25 only": (0.0, 1.0),
    "rrf 1:1": (1.0, 1.0),
    "rrf 2:1 dense": (2.0, 1.0),
    "rrf 1:2 bm25": (1.0, 2.0),
}


class CachedQueries(SentenceTransformerEmbedder):
    """The same questions come back for every configuration: embed each once."""

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[str, list[float]] = {}

    def embed_query(self, text: str) -> list[float]:
        if text not in self._memo:
            self._memo[text] = super().embed_query(text)
        return self._memo[text]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sizes", default="64,96,128,160,192")
    parser.add_argument("--candidates", default="20", help="comma-separated candidates per ranker")
    parser.add_argument("--overlaps", default="0,1")
    args = parser.parse_args()
    embedder = CachedQueries()
    texts = {d.doc_id: d.text for d in load_corpus(ROOT / "corpus").documents}
    items = [i for i in load_gold(ROOT / "eval" / "gold.jsonl") if i.expected_kind == "answer" and i.expected_quotes]
    gold = [
        (resolve_query(i.question, i.history), locate_quotes(texts, i.expected_docs, i.expected_quotes)) for i in items
    ]
    rows = [
        "| max tokens | overlap | chunks | fusion | k | candidates | hit@k | recall@k | MRR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in (int(s) for s in args.sizes.split(",")):
        for overlap in (int(o) for o in args.overlaps.split(",")):
            store = MemoryStore()
            ingest(ROOT / "corpus", store, embedder, size, overlap)
            n_chunks = len(store.all_chunks())
            for fusion, (wd, wb), k, cands in (
                (f, w, k, c)
                for f, w in FUSIONS.items()
                for k in (3, 5, 8)
                for c in map(int, args.candidates.split(","))
            ):
                retriever = Retriever(
                    store, embedder, RetrievalSettings(top_k=k, dense_weight=wd, bm25_weight=wb, candidates=cands)
                )
                hits, recalls, rr = [], [], []
                for query, spans in gold:
                    chunks = [p.chunk for p in retriever.retrieve(retriever.correct_spelling(query))]
                    rank = first_hit_rank(chunks, spans)
                    hits.append(rank is not None)
                    rr.append(1 / rank if rank else 0.0)
                    recalls.append(recall(chunks, spans))
                rows.append(
                    f"| {size} | {overlap} | {n_chunks} | {fusion} | {k} | {cands} | {statistics.mean(hits):.3f} | "
                    f"{statistics.mean(recalls):.3f} | {statistics.mean(rr):.3f} |"
                )
                print(rows[-1], flush=True)
    table = f"Gold items: {len(gold)} answerable questions with quotes.\n\n" + "\n".join(rows) + "\n"
    if args.out:
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
