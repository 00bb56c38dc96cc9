"""Chat models: a one-method interface, an implementation on the official `openai` client for any
OpenAI-compatible endpoint, and a scripted test double (shipped here, like the hash embedder)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel

from bpd_rag.errors import LLMUnavailableError

if TYPE_CHECKING:
    from bpd_rag.settings import LLMSettings

# Like pydantic-ai's flag of the same name: tests set it to False (tests/conftest.py) so that nothing reaches
# a real endpoint unless a test asks for it; checked before every remote call.
ALLOW_MODEL_REQUESTS = True


class ChatMessage(BaseModel):
    """One message sent to a chat model."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """Turns messages into the model's reply text; raises LLMUnavailableError when it cannot."""

    name: str

    def complete(self, messages: Sequence[ChatMessage], max_tokens: int | None = None) -> str: ...


def is_openai_endpoint(base_url: str | None) -> bool:
    """Whether the base URL is OpenAI's own API (no URL means the client's default, which is OpenAI)."""
    if not base_url:
        return True
    host = urlsplit(base_url).hostname or ""
    return host == "openai.com" or host.endswith(".openai.com")


def token_limit(base_url: str | None, cap: int) -> dict[str, int]:
    """The request field that caps the reply's length at this endpoint.

    OpenAI wants max_completion_tokens; llama.cpp, vLLM, Ollama and llamafile read only the legacy max_tokens
    (llama-cpp-python issue #1907). Never both: OpenAI rejects a request that sets the two.
    """
    return {"max_completion_tokens": cap} if is_openai_endpoint(base_url) else {"max_tokens": cap}


class OpenAIChatModel:
    """Any OpenAI-compatible endpoint through the official `openai` client, with one deadline for the whole call.

    The client's timeout applies to each read, so an endpoint that sends a byte every few seconds would never
    time out: the call runs in a worker thread, and when the deadline passes its connection is closed.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.name = f"openai-compatible:{settings.model}"
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llm")

    def complete(self, messages: Sequence[ChatMessage], max_tokens: int | None = None) -> str:
        if not ALLOW_MODEL_REQUESTS:
            # Raised, not turned into a fallback, so a test that forgot to script the model fails loudly.
            raise RuntimeError("Model requests are blocked: bpd_rag.chat_models.ALLOW_MODEL_REQUESTS is False.")
        import openai

        s = self.settings
        # A client per call: closing it is how a call past its deadline is stopped.
        client = openai.OpenAI(
            base_url=s.base_url,
            api_key=s.api_key.get_secret_value(),
            max_retries=0,  # a dead endpoint should fail fast; the fallback answers instead
            timeout=openai.Timeout(s.timeout_s, connect=min(s.timeout_s, 5.0)),
        )
        request: dict[str, Any] = {
            "model": s.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": s.temperature,
            **token_limit(s.base_url, max_tokens or s.max_tokens),
        }
        future = self._pool.submit(lambda: client.chat.completions.create(**request))
        try:
            reply = future.result(timeout=s.deadline_s)
        except FutureTimeout as exc:
            client.close()  # the worker's read fails at once instead of holding the connection
            raise LLMUnavailableError(f"The endpoint did not finish within {s.deadline_s:g} s.") from exc
        # Broad on purpose: connection errors, timeouts, HTTP errors and malformed replies arrive as many
        # exception types (openai, httpx, pydantic), and every one must degrade to the fallback.
        except Exception as exc:
            raise LLMUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if future.done():
                client.close()
        try:
            content = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:  # no choices, or choices of the wrong shape
            raise LLMUnavailableError(f"The endpoint's reply has no message ({exc}).") from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMUnavailableError(f"The endpoint returned no text ({type(content).__name__}).")
        return content


class ScriptedChatModel:
    """A chat model for tests: replies with what was enqueued, in order, and records what it received.

    An enqueued exception is raised instead of replying (e.g. LLMUnavailableError for a dead endpoint).
    """

    __test__ = False
    name = "scripted"

    def __init__(self, *replies: str | Exception) -> None:
        self._replies: deque[str | Exception] = deque(replies)
        self.history: list[list[ChatMessage]] = []
        self._lock = threading.Lock()

    def enqueue(self, *replies: str | Exception) -> ScriptedChatModel:
        """Add replies to give next."""
        with self._lock:
            self._replies.extend(replies)
        return self

    def complete(self, messages: Sequence[ChatMessage], max_tokens: int | None = None) -> str:
        with self._lock:
            self.history.append(list(messages))
            if not self._replies:
                raise AssertionError("ScriptedChatModel was asked more often than replies were enqueued.")
            reply = self._replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        return reply

    @property
    def last_user_message(self) -> str:
        """The content of the last user message of the last call (what the model was given)."""
        return next(m.content for m in reversed(self.history[-1]) if m.role == "user")


def build_chat_model(settings: LLMSettings) -> ChatModel:
    """The chat model the settings describe (the official openai client on BPD_RAG_LLM__BASE_URL)."""
    return OpenAIChatModel(settings)
