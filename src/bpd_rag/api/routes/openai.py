"""OpenAI-compatible /v1/chat/completions and /v1/models, for the openai client and OpenAI-style chat front ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from sse_starlette import EventSourceResponse

from bpd_rag.api.deps import ChatServiceDep, SettingsDep
from bpd_rag.api.errors import ERROR_RESPONSES
from bpd_rag.api.openai_format import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    completion_chunks,
    to_completion,
    to_question,
)

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=ERROR_RESPONSES)


@router.get("/models", response_model=ModelList)
async def models(settings: SettingsDep) -> ModelList:
    """The one model this server offers."""
    return ModelList(data=[ModelCard(id=settings.api.model_name)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "A completion, or chunks when stream."}},
)
async def chat_completions(
    body: ChatCompletionRequest,
    service: ChatServiceDep,
    settings: SettingsDep,
    x_conversation_id: Annotated[str | None, Header(max_length=100)] = None,
) -> ChatCompletion | EventSourceResponse:
    """Answer the last user message (earlier turns are history; system messages are ignored).

    Citations travel in the text (a "Sources:" block) and in full in the extra `bpd_rag` field. The conversation
    id is the X-Conversation-Id header, else the request's `user` field.
    """
    message, history = to_question(body)
    reply = await service.ask(message, history, channel="openai", conversation_id=x_conversation_id or body.user)
    model = settings.api.model_name
    if body.stream:
        return EventSourceResponse(completion_chunks(reply, model))
    return to_completion(reply, model)
