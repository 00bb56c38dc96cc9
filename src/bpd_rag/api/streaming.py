"""Server-sent events of an answer: its text in word-sized pieces as produced, then a final event."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

from sse_starlette import ServerSentEvent

from bpd_rag.api.schemas import ChatResponse

_PIECE = re.compile(r"\s*\S+\s*|\s+")


def text_pieces(text: str) -> Iterator[str]:
    """The text as word pieces (each with its whitespace and line breaks); joined they are the text exactly."""
    for match in _PIECE.finditer(text):
        yield match.group(0)


async def answer_events(reply: ChatResponse) -> AsyncIterator[ServerSentEvent]:
    """`delta` events with {"text": piece}, then one `done` event with the whole ChatResponse."""
    for piece in text_pieces(reply.answer):
        yield ServerSentEvent(data=json.dumps({"text": piece}), event="delta")
    yield ServerSentEvent(data=reply.model_dump_json(), event="done")
