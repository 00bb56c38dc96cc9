"""Conversation risk kept on the server, by conversation id: scores and flags only, never message text.

A client may drop or truncate its history (a reloaded page, an OpenAI-style front end that sends only the last
turns); the server still knows that risk was raised earlier in the conversation, and earlier turns are read
once per conversation instead of once per request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from bpd_rag.safety.guard import ConversationRisk

# A conversation idle this long is forgotten; at most this many are kept (the oldest go first).
DEFAULT_TTL_S = 6 * 3600.0
DEFAULT_MAX_CONVERSATIONS = 50_000


def conversation_key(conversation_id: str) -> str:
    """The key a conversation is kept under: a hash of the id the client sent."""
    return hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ConversationStore:
    """In-memory, per process, bounded by count and idle time; thread-safe."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_conversations: int = DEFAULT_MAX_CONVERSATIONS) -> None:
        self.ttl_s = ttl_s
        self.max_conversations = max_conversations
        self._items: OrderedDict[str, tuple[float, ConversationRisk]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conversation_id: str | None) -> ConversationRisk | None:
        """The conversation's risk record (a new one for an id not seen yet); None without an id."""
        if not conversation_id:
            return None
        key = conversation_key(conversation_id)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._items.pop(key, None)
            risk = entry[1] if entry is not None else ConversationRisk()
            self._items[key] = (now, risk)  # most recently used last
            while len(self._items) > self.max_conversations:
                self._items.popitem(last=False)
            return risk

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            key, (seen, _) = next(iter(self._items.items()))
            if now - seen <= self.ttl_s:
                return
            del self._items[key]
