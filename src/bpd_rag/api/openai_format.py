"""The OpenAI chat-completions format: requests to (question, history), answers to completions and chunks."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import ServerSentEvent

from bpd_rag.api.errors import ApiError
from bpd_rag.api.schemas import ChatResponse
from bpd_rag.api.streaming import text_pieces
from bpd_rag.render import openai_text, without_sources
from bpd_rag.types import Message


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="system and developer messages are ignored: they never change the bot's rules."
    )
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat-completions request; sampling options (temperature, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, description="Ignored: there is one bot (see GET /v1/models).")
    messages: list[OpenAIMessage] = Field(min_length=1, description="The last user message is the question.")
    stream: bool = False
    user: str | None = Field(
        default=None,
        max_length=100,
        description="OpenAI's end-user id; used as the conversation id (or send the X-Conversation-Id header).",
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    """An OpenAI chat completion; `bpd_rag` carries the whole Answer (citations, kind, disclaimer, id)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: None = None
    bpd_rag: ChatResponse


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "bpd-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def to_question(request: ChatCompletionRequest) -> tuple[str, list[Message]]:
    """The last user message as the question; earlier user/assistant messages as history (system ignored)."""
    turns = [m for m in request.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(
            422,
            "invalid_request",
            "The last user/assistant message must be the user's question (role 'user'). "
            'Example: {"model": "bpd-rag", "messages": [{"role": "user", "content": "What dose was used?"}]}',
        )
    history = [
        Message(role="user", content=m.text())
        if m.role == "user"
        else Message(role="assistant", content=without_sources(m.text()))
        for m in turns[:-1]
    ]
    return turns[-1].text(), history


def completion_text(reply: ChatResponse) -> str:
    """The answer with its notice, disclaimer, the crisis resources and a Sources block (bpd_rag.render)."""
    return openai_text(reply)


def completion_id(reply: ChatResponse) -> str:
    return f"chatcmpl-{reply.id}"


def to_completion(reply: ChatResponse, model: str) -> ChatCompletion:
    """A non-streamed completion."""
    return ChatCompletion(
        id=completion_id(reply),
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=completion_text(reply)))],
        bpd_rag=reply,
    )


async def completion_chunks(reply: ChatResponse, model: str) -> AsyncIterator[ServerSentEvent]:
    """chat.completion.chunk events: the role, the text in word pieces, a stop chunk with bpd_rag, then [DONE]."""
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None, extra: dict[str, Any] | None = None) -> ServerSentEvent:
        body: dict[str, Any] = {
            "id": completion_id(reply),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        body.update(extra or {})
        return ServerSentEvent(data=json.dumps(body))

    yield chunk({"role": "assistant", "content": ""})
    for piece in text_pieces(completion_text(reply)):
        yield chunk({"content": piece})
    yield chunk({}, "stop", {"bpd_rag": reply.model_dump(mode="json")})
    yield ServerSentEvent(data="[DONE]")
