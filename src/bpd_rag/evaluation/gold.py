"""The gold set: questions with the kind, sources, quotes and phrases a right answer has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bpd_rag.types import AnswerKind, Message


class GoldItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    category: str
    question: str
    history: list[Message] = Field(default_factory=list)
    expected_kind: AnswerKind
    expected_docs: list[str] = Field(default_factory=list)
    expected_quotes: list[str] = Field(default_factory=list)
    must_contain: list[list[str]] = Field(default_factory=list)
    must_not_contain: list[str] = Field(default_factory=list)
    disclaimer_required: bool = False
    split: Literal["dev", "test"] = Field(
        default="test", description="dev: what thresholds and models are tuned on; test: measured and gated only."
    )


def load_gold(path: Path) -> list[GoldItem]:
    """Read a JSONL gold file; a bad line is reported with its number."""
    items: list[GoldItem] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(GoldItem.model_validate(json.loads(line)))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: invalid gold item: {exc}") from exc
    return items
