"""POST /api/feedback and the question log behind `bpd-rag report`."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bpd_rag.cli import app as cli
from bpd_rag.feedback import FeedbackStore
from bpd_rag.settings import Settings
from tests.api.conftest import ANSWERED

runner = CliRunner()


def _ask(client: TestClient, message: str) -> str:
    response = client.post("/api/chat", json={"message": message})
    assert response.status_code == 200
    return str(response.json()["id"])


def test_feedback_is_stored_and_a_second_rating_replaces_the_first(client: TestClient, settings: Settings) -> None:
    answer_id = _ask(client, ANSWERED)
    first = client.post("/api/feedback", json={"answer_id": answer_id, "rating": "up"})
    assert first.status_code == 201 and first.json() == {"answer_id": answer_id, "rating": "up", "stored": True}
    comment = "Wrong! Call me at 555-123-4567 or mail jane.doe@example.com"
    client.post("/api/feedback", json={"answer_id": answer_id, "rating": "down", "comment": comment})
    store = FeedbackStore(settings.api.feedback_db)
    [row] = store.feedback()
    assert row.rating == "down" and row.kind == "answer" and row.question == ANSWERED
    assert row.comment == "Wrong! Call me at [phone] or mail [email]"
    assert store.rating_counts() == {"up": 0, "down": 1}


def test_feedback_errors(client: TestClient) -> None:
    unknown = client.post("/api/feedback", json={"answer_id": "not-an-answer", "rating": "up"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_answer"
    answer_id = _ask(client, ANSWERED)
    for body in ({"answer_id": answer_id, "rating": "meh"}, {"answer_id": answer_id}, {"rating": "up"}):
        response = client.post("/api/feedback", json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    long = client.post("/api/feedback", json={"answer_id": answer_id, "rating": "up", "comment": "x" * 2001})
    assert long.status_code == 422


def test_questions_are_logged_redacted_with_their_kind(client: TestClient, settings: Settings) -> None:
    _ask(client, "I'm jane@example.com, +1 (555) 123-4567: does ketamine cure hiccups in parrots?")
    [row] = FeedbackStore(settings.api.feedback_db).unanswered()
    assert row.question == "I'm [email], [phone]: does ketamine cure hiccups in parrots?"
    db = Path(settings.api.feedback_db).read_bytes()
    assert b"jane@example.com" not in db and b"123-4567" not in db


def _env(settings: Settings) -> dict[str, str]:
    return {"BPD_RAG_API__FEEDBACK_DB": str(settings.api.feedback_db)}


def test_report_unanswered_counts_questions_for_the_content_team(client: TestClient, settings: Settings) -> None:
    for question in (
        "Is ketamine covered by insurance?",
        "is ketamine  covered by insurance",
        "What color is the clinic logo?",
    ):
        _ask(client, question)
    _ask(client, ANSWERED)  # answered: not in the report
    result = runner.invoke(cli, ["report", "unanswered", "--json"], env=_env(settings))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["unanswered"]
    assert [(r["count"], r["question"].lower().rstrip("?")) for r in rows] == [
        (2, "is ketamine  covered by insurance"),
        (1, "what color is the clinic logo"),
    ]
    text = runner.invoke(cli, ["report", "unanswered"], env=_env(settings))
    assert "insurance" in text.output and "2" in text.output


def test_report_feedback(client: TestClient, settings: Settings) -> None:
    answer_id = _ask(client, ANSWERED)
    client.post("/api/feedback", json={"answer_id": answer_id, "rating": "up", "comment": "clear, thanks"})
    result = runner.invoke(cli, ["report", "feedback", "--json"], env=_env(settings))
    data = json.loads(result.output)
    assert data["counts"] == {"up": 1, "down": 0}
    assert data["feedback"][0]["comment"] == "clear, thanks" and data["feedback"][0]["question"] == ANSWERED
    text = runner.invoke(cli, ["report", "feedback"], env=_env(settings)).output
    assert "1 helpful, 0 not helpful" in text and "clear, thanks" in text


def test_reports_before_any_feedback_say_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["report", "feedback"], env={"BPD_RAG_API__FEEDBACK_DB": str(tmp_path / "none.db")})
    assert result.exit_code == 1 and "bpd-rag serve" in result.output
