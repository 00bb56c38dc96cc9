"""The LangChain tutorial pipeline to compare against: bpd_rag.evaluation.baseline, the evaluation's yardstick
(RecursiveCharacterTextSplitter 1000/200 -> the same embedder -> Chroma top 4 -> the same extractive answerer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bpd_rag.embeddings import Embedder
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Message


class Baseline(Protocol):
    def ask(self, message: str, history: Sequence[Message] = ()) -> Answer: ...


def source() -> str:
    """Where the baseline comes from (shown in the report)."""
    return "bpd_rag.evaluation.baseline"


def build(settings: Settings, embedder: Embedder) -> tuple[Baseline, str]:
    """The baseline over the settings' corpus, and where it came from."""
    from bpd_rag.evaluation.baseline import build_baseline

    return build_baseline(settings, embedder), source()
