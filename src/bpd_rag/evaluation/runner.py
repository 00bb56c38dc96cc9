"""Runs the gold set through a target and scores every reply: the one loop behind `bpd-rag eval`, the gate
test and the benchmarks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bpd_rag.corpus import load_corpus
from bpd_rag.embeddings import Embedder, Vector
from bpd_rag.errors import ConfigurationError
from bpd_rag.evaluation.gold import GoldItem, load_gold
from bpd_rag.evaluation.retrieval_metrics import Span, locate_quotes
from bpd_rag.evaluation.scoring import (
    ItemScore,
    Metrics,
    ScoringContext,
    aggregate,
    by_category,
    kind_confusion,
    score_item,
)
from bpd_rag.evaluation.targets import Target
from bpd_rag.settings import Settings
from bpd_rag.support import EmbeddingLexicalSupport, SupportScorer
from bpd_rag.types import Message

# (items done, items in all, id of the item just done): for progress bars.
Progress = Callable[[int, int, str], None]


@dataclass
class EvalRun:
    """The scores of one target on the gold set, and their aggregates."""

    target: dict[str, Any]
    retrieval_source: str
    scores: list[ItemScore]
    overall: Metrics = field(default_factory=dict)
    categories: dict[str, Metrics] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, target: Target, scores: list[ItemScore]) -> EvalRun:
        return cls(
            target=target.describe(),
            retrieval_source=target.retrieval_source,
            scores=scores,
            overall=aggregate(scores),
            categories=by_category(scores),
            confusion=kind_confusion(scores),
        )

    @property
    def failures(self) -> list[ItemScore]:
        return [s for s in self.scores if not s.passed]


def gold_spans(item: GoldItem, documents: dict[str, str]) -> list[Span]:
    """Where the item's gold quotes stand in the corpus (none for items without quotes)."""
    if not item.expected_quotes:
        return []
    try:
        return locate_quotes(documents, item.expected_docs, item.expected_quotes)
    except ValueError as exc:
        raise ConfigurationError(f"Gold item {item.id} does not match the corpus: {exc}") from exc


def scoring_context(
    settings: Settings,
    scorer: SupportScorer,
    judge: SupportScorer | None = None,
    safety_layer: bool | None = None,
) -> ScoringContext:
    """The corpus texts and the support scorers, from the settings."""
    documents = {d.doc_id: d.text for d in load_corpus(settings.corpus_dir).documents}
    if not documents:
        raise ConfigurationError(f"No documents in {settings.corpus_dir}. Set BPD_RAG_CORPUS_DIR to the corpus folder.")
    return ScoringContext(
        documents=documents,
        scorer=scorer,
        support_threshold=settings.answer.support_threshold,
        judge=judge,
        judge_threshold=getattr(judge, "threshold", 0.5),
        safety_layer=safety_layer,
        min_sentence_score=settings.answer.min_sentence_score,
    )


class CachedEmbedder:
    """Remembers document vectors: the support scorer meets the same corpus sentences question after question."""

    def __init__(self, embedder: Embedder, limit: int = 50_000) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self.dimension = embedder.dimension
        self.max_tokens = embedder.max_tokens
        self._limit = limit
        self._vectors: dict[str, Vector] = {}

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            if len(self._vectors) + len(missing) > self._limit:
                self._vectors.clear()
            self._vectors.update(zip(missing, self.embedder.embed_documents(missing), strict=True))
        return [self._vectors[t] for t in texts]

    def embed_query(self, text: str) -> Vector:
        return self.embedder.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.embedder.count_tokens(text)


def default_scorer(embedder: Embedder) -> SupportScorer:
    """The deterministic support scorer the LLM answerer's post-check also uses (with cached vectors)."""
    return EmbeddingLexicalSupport(CachedEmbedder(embedder))


def evaluate(
    items: Sequence[GoldItem], target: Target, ctx: ScoringContext, progress: Progress | None = None
) -> EvalRun:
    """Ask the target every gold question and score each reply."""
    documents = dict(ctx.documents)
    spans = {item.id: gold_spans(item, documents) for item in items}  # checked before the first question
    scores: list[ItemScore] = []
    for done, item in enumerate(items, start=1):
        observation = target.observe(item, spans[item.id])
        scores.append(score_item(item, spans[item.id], observation, ctx))
        if progress is not None:
            progress(done, len(items), item.id)
    return EvalRun.of(target, scores)


def with_own_histories(items: Sequence[GoldItem], reply: Callable[[str, list[Message]], str]) -> list[GoldItem]:
    """The items with each assistant turn of their history replaced by what the target itself replies to the
    user turns before it, as the widget sends its conversation back. A gold history is a short summary of a
    reply ("Four infusions over two weeks [1]."); the product's own reply is longer and names its sources, and
    follow-ups are resolved against it."""
    out = []
    for item in items:
        if not any(m.role == "assistant" for m in item.history):
            out.append(item)
            continue
        history: list[Message] = []
        for turn in item.history:
            if turn.role == "user":
                history = [*history, turn, Message(role="assistant", content=reply(turn.content, history))]
        out.append(item.model_copy(update={"history": history}))
    return out


DEFAULT_GOLD = (Path("eval/gold.jsonl"), Path("eval/patient.jsonl"))
Split = Literal["dev", "test", "all"]


def load_items(paths: Path | Sequence[Path], categories: Sequence[str] = (), split: Split = "all") -> list[GoldItem]:
    """The gold items of one or more files, optionally only one split and some categories."""
    items: list[GoldItem] = []
    for path in [paths] if isinstance(paths, Path) else paths:
        try:
            items += load_gold(path)
        except OSError as exc:
            raise ConfigurationError(f"Cannot read the gold set {path} ({exc}). Pass --gold PATH.") from exc
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    duplicated = [i for i, n in Counter(item.id for item in items).items() if n > 1]
    if duplicated:
        raise ConfigurationError(f"Gold item ids used twice: {', '.join(sorted(duplicated)[:5])}. Ids must be unique.")
    if split != "all":
        items = [i for i in items if i.split == split]
    if categories:
        known = {i.category for i in items}
        unknown = set(categories) - known
        if unknown:
            raise ConfigurationError(f"Unknown categories {sorted(unknown)}; the gold set has {sorted(known)}.")
        items = [i for i in items if i.category in categories]
    return items
