"""The data that flows through the pipeline and out of it (the Answer contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SourceType = str  # e.g. "clinic_blog", "news", "trial_summary"; free text so a clinic can add its own

SOURCE_TYPE_LABELS: dict[str, str] = {
    "clinic_blog": "clinic blog",
    "news": "news article",
    "trial_summary": "trial summary",
    "trial_report": "trial report",
    "patient_leaflet": "patient leaflet",
    "unknown": "document",
}


def source_type_label(source_type: str) -> str:
    """Readable name of a source type ("clinic_blog" -> "clinic blog")."""
    return SOURCE_TYPE_LABELS.get(source_type, source_type.replace("_", " "))


class Document(BaseModel):
    """One corpus document: front matter plus the cleaned body text that chunk offsets point into."""

    doc_id: str
    title: str
    text: str
    source_type: SourceType = "unknown"
    publisher: str | None = None
    author: str | None = None
    published: str | None = None
    url: str | None = None
    path: str | None = None
    content_hash: str = ""


class Chunk(BaseModel):
    """A span of a document: ``text == document.text[start:end]``."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    heading: str | None = None
    title: str = ""
    source_type: SourceType = "unknown"
    url: str | None = None
    publisher: str | None = None
    doc_hash: str = ""


class Passage(BaseModel):
    """A retrieved chunk with the scores that ranked it."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    dense_similarity: float | None = None
    neighbour_of: str | None = Field(default=None, description="Set when added as the chunk after a retrieved one.")


class Citation(BaseModel):
    id: int
    doc_id: str
    chunk_id: str
    title: str
    source_type: SourceType
    url: str | None = None
    quote: str = Field(description="Verbatim text of the cited document.")
    start: int | None = Field(default=None, description="Offset of the quote in the document text.")


class Conflict(BaseModel):
    summary: str
    citation_ids: list[int]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str


AnswerKind = Literal["answer", "no_answer", "crisis", "refusal"]


class Answer(BaseModel):
    """The Answer contract shared by the CLI's --json and the HTTP API."""

    kind: AnswerKind
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    disclaimer: str = ""
    conflicts: list[Conflict] = Field(default_factory=list)
    notice: str | None = Field(
        default=None,
        description="Set when the reply is degraded, e.g. the LLM failed and the extractive answer is shown.",
    )
    answerer: str = Field(default="extractive", description="Which answerer wrote the reply.")
    resources: list[str] = Field(default_factory=list, description="Crisis resources shown with this reply.")


TriageKind = Literal["ok", "crisis", "refusal"]


class Triage(BaseModel):
    """What the safety layer decided about a message before retrieval."""

    kind: TriageKind
    category: str = ""
    reason: str = ""
