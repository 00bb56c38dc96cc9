"""Conversation risk kept on the server: bounded, expiring, keyed by a hash, and no re-reading of earlier turns."""

from __future__ import annotations

import time

import pytest

from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.safety import SafetyGuard
from bpd_rag.safety.conversations import ConversationStore, conversation_key
from bpd_rag.safety.guard import HISTORY_TURNS, ConversationRisk
from bpd_rag.settings import Settings
from bpd_rag.types import Message, SafetyDecision


def test_a_conversation_is_found_again_by_its_id_and_never_by_another() -> None:
    store = ConversationStore()
    first = store.get("tab-1")
    assert first is not None and store.get("tab-1") is first
    assert store.get("tab-2") is not first
    assert store.get(None) is None and store.get("") is None
    assert "tab-1" not in conversation_key("tab-1")  # kept under a hash of the id


def test_the_store_is_bounded_by_count_and_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConversationStore(ttl_s=60.0, max_conversations=3)
    for n in range(5):
        store.get(f"c{n}")
    assert len(store) == 3  # the oldest went first
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 61.0)
    store.get("new")
    assert len(store) == 1  # idle conversations expired


def test_a_conversation_keeps_scores_not_text() -> None:
    risk = ConversationRisk()
    risk.record("i want to die", SafetyDecision(action="crisis", risk="crisis", turn_risk=2.0))
    assert risk.raised and all("die" not in key for key in risk.turns)
    for n in range(10 * HISTORY_TURNS):
        risk.record(f"question {n}", SafetyDecision(turn_risk=0.0))
    assert len(risk.turns) <= 4 * HISTORY_TURNS and len(risk.recent()) == HISTORY_TURNS


@pytest.mark.real_model
def test_earlier_turns_are_read_once_per_conversation_not_once_per_request(
    real_embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = SafetyGuard(Settings(_env_file=None), real_embedder)  # type: ignore[call-arg]
    reads: list[str] = []
    original = guard.reader.read
    monkeypatch.setattr(guard.reader, "read", lambda text, language: reads.append(text) or original(text, language))
    history: list[Message] = []
    for n in range(20):
        history += [
            Message(role="user", content=f"question number {n} about the trial " + "and more words " * 60),
            Message(role="assistant", content="an answer"),
        ]
    guard.assess("what did the trial find?", history)
    first = len(reads)
    assert first <= HISTORY_TURNS + 1  # only the last few turns are read, however long the history
    guard.assess("and how long did it last?", history)
    assert len(reads) - first == 1  # the new message only: earlier turns are not read again
