"""Request and response bodies of the HTTP API (the Answer contract plus the id feedback refers to)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bpd_rag.types import Answer, Message


class ChatRequest(BaseModel):
    """A question and, for follow-ups, the conversation so far (oldest first)."""

    message: str = Field(description="The question.", examples=["What dose of ketamine was used in the pilot trial?"])
    history: list[Message] = Field(
        default_factory=list,
        description="Earlier turns, oldest first; roles are 'user' and 'assistant'.",
    )
    conversation_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Optional id of the conversation (e.g. a UUID kept for the browser tab). The server keeps "
        "the conversation's risk under it (scores only, never text), so a risk raised earlier still counts when "
        "the history is cut short.",
    )


class ChatResponse(Answer):
    """The Answer contract with the id that feedback refers to."""

    id: str = Field(description="Id of this answer (a UUID); send it to POST /api/feedback.")

    @classmethod
    def of(cls, answer: Answer, answer_id: str) -> ChatResponse:
        """The answer with its id (the rendered fields are computed again, not copied)."""
        return cls(id=answer_id, **answer.model_dump(exclude={"answer", "conflicts"}))


class FeedbackRequest(BaseModel):
    """A thumbs up or down on one answer, with an optional comment."""

    answer_id: str = Field(min_length=1, max_length=64, description="The id of the answer (ChatResponse.id).")
    rating: Literal["up", "down"] = Field(description="'up' (helpful) or 'down' (not helpful).")
    comment: str = Field(default="", max_length=2000, description="Optional words from the reader.")


class FeedbackReceipt(BaseModel):
    answer_id: str
    rating: Literal["up", "down"]
    stored: bool = True


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    index: str = Field(description="Where the index lives.")
    chunks: int = Field(description="Live chunks in the index.")
    embedder: str = Field(description="The embedding model the index was built with and the server uses.")
