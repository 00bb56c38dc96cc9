"""The bpd-rag command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bpd_rag.cli import app
from tests.conftest import CORPUS, write_doc

runner = CliRunner()


def _env(tmp_path: Path, corpus: Path, backend: str = "hash") -> dict[str, str]:
    return {
        "BPD_RAG_CORPUS_DIR": str(corpus),
        "BPD_RAG_STORE__PATH": str(tmp_path / "index"),
        "BPD_RAG_EMBEDDING__BACKEND": backend,
    }


def test_ask_before_ingest_says_to_ingest(tmp_path: Path, tmp_corpus: Path) -> None:
    result = runner.invoke(app, ["ask", "What dose was used?"], env=_env(tmp_path, tmp_corpus))
    assert result.exit_code == 1
    assert "bpd-rag ingest" in result.output


def test_ingest_json_then_ask_json(tmp_path: Path, tmp_corpus: Path) -> None:
    env = _env(tmp_path, tmp_corpus)
    result = runner.invoke(app, ["ingest", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["added"]) == 5 and report["errors"] == []
    again = json.loads(runner.invoke(app, ["ingest", "--json"], env=env).output)
    assert again["chunks_written"] == 0 and len(again["unchanged"]) == 5
    result = runner.invoke(app, ["ask", "--json", "bladder problems incontinence urinating"], env=env)
    answer = json.loads(result.output)
    assert set(answer) >= {"kind", "answer", "citations", "disclaimer", "conflicts"}
    assert answer["citations"] and answer["citations"][0]["doc_id"] == "ketamine-bpd-pros-cons"


def test_ingest_reports_a_broken_file_and_keeps_going(tmp_path: Path, tmp_corpus: Path) -> None:
    (tmp_corpus / "broken.md").write_text("---\ntitle: [oops\n---\nText", encoding="utf-8")
    write_doc(tmp_corpus, "extra", "Ketamine was studied in a new leaflet. " * 3)
    result = runner.invoke(app, ["ingest"], env=_env(tmp_path, tmp_corpus))
    assert result.exit_code == 2  # something needs attention, but the rest was indexed
    assert "broken.md" in result.output and "YAML" in result.output
    assert "6 added" in result.output


def test_bad_inputs_are_clear_errors(tmp_path: Path, tmp_corpus: Path) -> None:
    env = _env(tmp_path, tmp_corpus)
    assert "empty" in runner.invoke(app, ["ask", "   "], env=env).output
    bad = tmp_path / "history.json"
    bad.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["ask", "--history", str(bad), "and then?"], env=env)
    assert result.exit_code == 1 and "Expected a JSON list" in result.output
    result = runner.invoke(app, ["ask", "x"], env={**env, "BPD_RAG_RETRIEVAL__TOP_K": "zero"})
    assert result.exit_code == 1 and "Invalid setting" in result.output


def test_chat_keeps_history_for_follow_ups(tmp_path: Path, tmp_corpus: Path) -> None:
    env = _env(tmp_path, tmp_corpus)
    runner.invoke(app, ["ingest"], env=env)
    result = runner.invoke(app, ["chat"], env=env, input="bladder problems incontinence\nwhat about that?\nexit\n")
    assert result.exit_code == 0
    assert result.output.count("Sources") == 2


@pytest.mark.real_model
def test_real_cli_answers_with_verbatim_quotes(tmp_path: Path) -> None:
    """The installed console script, the packaged model and an embedded Chroma index, end to end."""
    env = {**os.environ, **_env(tmp_path, CORPUS, backend="sentence-transformers")}
    exe = Path(sys.executable).parent / "bpd-rag"
    subprocess.run([exe, "ingest"], env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run(
        [exe, "ask", "--json", "What dose of ketamine was used in the pilot trial?"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    answer = json.loads(out.stdout)
    assert answer["kind"] == "answer"
    texts = {p.stem: p.read_text(encoding="utf-8") for p in CORPUS.glob("*.md")}
    assert all(c["quote"] in texts[c["doc_id"]] for c in answer["citations"])
    assert any("0.5 mg/kg" in c["quote"] for c in answer["citations"])
    for question in ("How much does an infusion cost in Philadelphia?", "What's the weather tomorrow?"):
        out = subprocess.run([exe, "ask", "--json", question], env=env, check=True, capture_output=True, text=True)
        assert json.loads(out.stdout)["kind"] == "no_answer"


def test_resources_are_printed_once() -> None:
    from io import StringIO

    from rich.console import Console

    from bpd_rag.cli import render_answer
    from bpd_rag.types import Answer, Resource, Statement

    lines = [Resource(label="988", text="Call or text 988 (Suicide & Crisis Lifeline)", call="988", sms="988")]
    buffer = StringIO()
    research = Answer(kind="answer", statements=[Statement(kind="plain", text="Research text.", lead=True)])
    render_answer(research.model_copy(update={"resources": lines}), Console(file=buffer, width=200))
    assert buffer.getvalue().count("Call or text 988") == 1
    buffer = StringIO()
    we_care = [Statement(kind="safety", text="We care.", resources=True)]
    render_answer(Answer(kind="crisis", statements=we_care, resources=lines), Console(file=buffer, width=200))
    assert buffer.getvalue().count("Call or text 988") == 1  # already in the reply: not repeated


def test_progress_off_a_terminal_is_a_line_every_few_items() -> None:
    import io

    from rich.console import Console

    from bpd_rag.console import LINE_EVERY, progress_bar

    out = io.StringIO()
    with progress_bar("Embedding", Console(file=out, force_terminal=False, width=200)) as update:
        for done in range(1, 61):
            update(done, 60, f"doc-{done}")
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Embedding: {LINE_EVERY}/60 doc-{LINE_EVERY}"
    assert lines[-1] == "Embedding: 60/60 doc-60" and len(lines) == 3
