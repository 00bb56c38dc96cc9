"""POST /api/chat and /api/chat/stream: the Answer contract, whole or as server-sent events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from bpd_rag.api.deps import ChatServiceDep
from bpd_rag.api.errors import ERROR_RESPONSES
from bpd_rag.api.schemas import ChatRequest, ChatResponse
from bpd_rag.api.streaming import answer_events

# No router-level rate limit: ChatService applies it after triage, so a crisis message always gets its reply.
router = APIRouter(prefix="/api", tags=["chat"], responses=ERROR_RESPONSES)

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'Server-sent events: `delta` events with {"text": ...} pieces of the answer as it is '
        "produced, then one `done` event with the whole ChatResponse (citations, kind, disclaimer, conflicts, id).",
        "content": {"text/event-stream": {}},
    }
}


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, service: ChatServiceDep) -> ChatResponse:
    """Answer a question from the clinic's sources, with numbered citations and an id for feedback."""
    return await service.ask(body.message, body.history, conversation_id=body.conversation_id)


@router.post("/chat/stream", response_class=EventSourceResponse, responses=_STREAM_DOC)
async def chat_stream(body: ChatRequest, service: ChatServiceDep) -> EventSourceResponse:
    """The same answer as server-sent events: the text in pieces, then a final `done` event with the rest."""
    reply = await service.ask(body.message, body.history, channel="stream", conversation_id=body.conversation_id)
    return EventSourceResponse(answer_events(reply))
