"""The evaluation's targets and command: a real local HTTP server, the LangChain baseline, `bpd-rag eval`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bpd_rag.cli import app
from bpd_rag.corpus import load_corpus
from bpd_rag.errors import ConfigurationError
from bpd_rag.evaluation.baseline import CHUNK_OVERLAP, CHUNK_SIZE, build_baseline
from bpd_rag.evaluation.gold import GoldItem, load_gold
from bpd_rag.evaluation.runner import default_scorer, evaluate, scoring_context
from bpd_rag.evaluation.targets import BaselineTarget, HttpTarget, PipelineTarget
from bpd_rag.pipeline import Pipeline
from bpd_rag.types import Message
from tests.conftest import CORPUS, ROOT

# One item of each shape: a fact with quotes, a follow-up that needs its history, a crisis, an off-topic one.
ITEM_IDS = ("fact-pip-dose", "multi-pip-control-group", "crisis-explicit", "offtopic-weather")


@pytest.fixture(scope="module")
def items() -> list[GoldItem]:
    by_id = {i.id: i for i in load_gold(ROOT / "eval" / "gold.jsonl")}
    return [by_id[i] for i in ITEM_IDS]


@pytest.fixture
def ingested(hash_pipeline: Pipeline) -> Pipeline:
    hash_pipeline.ingest()
    return hash_pipeline


class ChatServer:
    """POST /api/chat over a pipeline on 127.0.0.1 (stands in for the API), recording what it received."""

    def __init__(self, pipeline: Pipeline, rate_limited: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.rate_limited = rate_limited  # answer this many requests with 429 first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if self.path != "/api/chat":
                    self._send(404, {"detail": "not found"})
                elif server.rate_limited > 0:
                    server.rate_limited -= 1
                    self._send(429, {"detail": "slow down"}, {"Retry-After": "0.5"})
                else:
                    history = [Message.model_validate(m) for m in body["history"]]
                    answer = pipeline.ask(body["message"], history)
                    self._send(200, {**answer.model_dump(mode="json"), "id": "abc"})

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(ingested: Pipeline) -> Iterator[ChatServer]:
    with ChatServer(ingested) as running:
        yield running


def test_server_is_measured_like_the_pipeline_it_serves(
    ingested: Pipeline, server: ChatServer, items: list[GoldItem]
) -> None:
    ctx = scoring_context(ingested.settings, default_scorer(ingested.embedder), safety_layer=False)
    local = evaluate(items, PipelineTarget(ingested), ctx)
    remote_target = HttpTarget(server.url)
    remote = evaluate(items, remote_target, ctx)
    remote_target.close()

    assert [s.error for s in remote.scores] == [None] * len(items)
    assert [s.answer for s in remote.scores] == [s.answer for s in local.scores]
    for there, here in zip(remote.scores, local.scores, strict=True):
        assert (there.kind, there.missing_phrases, there.citation_problems) == (
            here.kind,
            here.missing_phrases,
            here.citation_problems,
        )
    # The follow-up went out with its history, as a patient's browser sends it.
    follow_up = next(r for r in server.requests if r["message"] == items[1].question)
    assert follow_up["history"] == [m.model_dump() for m in items[1].history]
    # Retrieval comes from citations there: at most as many passages as the reply cites.
    assert "citations" in remote.retrieval_source
    answerable = [s for s, item in zip(remote.scores, items, strict=True) if item.expected_docs and s.answer]
    assert answerable and all(s.retrieved == len(s.answer.citations) for s in answerable if s.answer is not None)


def test_rate_limited_requests_are_waited_out_and_not_counted_as_latency(ingested: Pipeline) -> None:
    with ChatServer(ingested, rate_limited=2) as running:
        target = HttpTarget(running.url)
        started = time.perf_counter()
        answer, seconds = target.chat("What dose of ketamine was used in the pilot trial?", [])
        total = time.perf_counter() - started
        target.close()
    assert len(running.requests) == 3 and answer.kind in ("answer", "no_answer")
    assert seconds <= total - 2 * 0.5  # both Retry-After waits are left out


def test_unreachable_server_is_a_clear_error(items: list[GoldItem], ingested: Pipeline) -> None:
    ctx = scoring_context(ingested.settings, default_scorer(ingested.embedder))
    target = HttpTarget("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ConfigurationError, match=r"Cannot reach http://127\.0\.0\.1:9"):
        evaluate(items[:1], target, ctx)


def test_baseline_is_the_plain_langchain_recipe(ingested: Pipeline, items: list[GoldItem]) -> None:
    baseline = build_baseline(ingested.settings, ingested.embedder)
    try:
        texts = {d.doc_id: d.text for d in load_corpus(CORPUS).documents}
        assert all(len(c.text) <= CHUNK_SIZE and texts[c.doc_id][c.start : c.end] == c.text for c in baseline.chunks)
        overlaps = [
            a.end - b.start for a, b in zip(baseline.chunks, baseline.chunks[1:], strict=False) if a.doc_id == b.doc_id
        ]
        assert max(overlaps) > 0 and max(overlaps) <= CHUNK_OVERLAP  # long paragraphs split with overlap
        passages = baseline.retrieve("What dose of ketamine was used in the pilot trial?")
        assert len(passages) == 4
        # No follow-up resolution: the history changes nothing.
        follow_up = items[1]
        assert baseline.ask(follow_up.question, follow_up.history) == baseline.ask(follow_up.question)
        ctx = scoring_context(ingested.settings, default_scorer(ingested.embedder), safety_layer=False)
        run = evaluate(items, BaselineTarget(baseline), ctx)
    finally:
        baseline.close()
    assert run.target["top_k"] == 4 and run.target["safety_layer"] is False
    assert all(s.retrieved == 4 for s in run.scores if s.retrieval_measured)
    assert run.scores[2].kind != "crisis"  # no safety layer


# --- the command ------------------------------------------------------------------------------------------

runner = CliRunner()


def _env(pipeline: Pipeline) -> dict[str, str]:
    settings = pipeline.settings
    return {
        "BPD_RAG_CORPUS_DIR": str(settings.corpus_dir),
        "BPD_RAG_STORE__PATH": str(settings.store.path),
        "BPD_RAG_EMBEDDING__BACKEND": "hash",
        "BPD_RAG_LLM__BASE_URL": "",
    }


def _gold(tmp_path: Path, items: list[GoldItem]) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(i.model_dump_json() + "\n" for i in items), encoding="utf-8")
    return path


def _thresholds(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_eval_against_a_server_prints_json_and_writes_the_report(
    tmp_path: Path, ingested: Pipeline, server: ChatServer, items: list[GoldItem]
) -> None:
    args = ["eval", "--against", server.url, "--gold", str(_gold(tmp_path, items)), "--split", "all", "--json"]
    args += ["--out-dir", str(tmp_path / "reports"), "--thresholds", str(_thresholds(tmp_path, "[min]\nitems = 4\n"))]
    result = runner.invoke(app, args, env=_env(ingested))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["overall"]["items"] == 4 and data["meta"]["mode"] == "http"
    assert data["thresholds"] == [{"metric": "items", "bound": "min", "limit": 4.0, "value": 4.0, "ok": True}]
    folder = Path(data["report_dir"])
    assert {p.name for p in folder.iterdir()} == {"report.json", "report.md", "report.html"}
    assert "from the reply's citations only" in (folder / "report.md").read_text(encoding="utf-8")
    assert len(server.requests) == 4


def test_eval_in_process_with_baseline_and_check(tmp_path: Path, ingested: Pipeline, items: list[GoldItem]) -> None:
    gate = _thresholds(tmp_path, "[min]\nitems = 5\nkind_accuracy = 0.0\n")
    args = ["eval", "--baseline", "--check", "--gold", str(_gold(tmp_path, items))]
    args += ["--out-dir", str(tmp_path / "reports"), "--thresholds", str(gate)]
    result = runner.invoke(app, args, env=_env(ingested))
    # Four items where the gate wants five: --check says so by its exit code.
    assert result.exit_code == 3, result.output
    assert "baseline" in result.stdout and "crisis recall" in result.stdout
    assert "Below threshold: items" in result.stdout
    assert "report.html" in result.stdout


def test_eval_llm_judge_without_endpoint_says_what_to_set(
    tmp_path: Path, ingested: Pipeline, items: list[GoldItem]
) -> None:
    args = ["eval", "--llm-judge", "--gold", str(_gold(tmp_path, items)), "--out-dir", str(tmp_path / "r")]
    result = runner.invoke(app, args, env=_env(ingested))
    assert result.exit_code == 1
    assert "BPD_RAG_LLM__BASE_URL" in result.output
    assert not (tmp_path / "r").exists()


def test_eval_with_an_unknown_category_lists_the_known_ones(tmp_path: Path, ingested: Pipeline) -> None:
    result = runner.invoke(app, ["eval", "--category", "facts"], env=_env(ingested))
    assert result.exit_code == 1
    assert "Unknown categories ['facts']" in result.output and "'fact'" in result.output


def test_own_histories_replace_the_gold_summaries_with_the_bots_replies() -> None:
    """Each assistant turn becomes the target's reply to the user turns before it; an item without one is kept."""
    from bpd_rag.evaluation.runner import with_own_histories

    asked: list[tuple[str, int]] = []

    def reply(message: str, history: list[Message]) -> str:
        asked.append((message, len(history)))
        return f"reply to {message} [1]"

    follow_up = GoldItem(
        id="mt",
        category="patient_multi_turn",
        question="and after that?",
        history=[
            Message(role="user", content="first"),
            Message(role="assistant", content="Short summary [1]."),
            Message(role="user", content="second"),
            Message(role="assistant", content="Another summary [1]."),
        ],
        expected_kind="answer",
    )
    alone = GoldItem(id="one", category="patient", question="what is bpd", expected_kind="answer")
    out = with_own_histories([follow_up, alone], reply)
    assert [m.content for m in out[0].history] == ["first", "reply to first [1]", "second", "reply to second [1]"]
    assert asked == [("first", 0), ("second", 2)]  # each reply sees the turns before it, as the widget sends them
    assert out[0].question == "and after that?" and out[1] is alone
    assert follow_up.history[1].content == "Short summary [1]."  # the gold item itself is not changed


def test_eval_against_a_server_with_its_own_histories(
    tmp_path: Path, ingested: Pipeline, server: ChatServer, items: list[GoldItem]
) -> None:
    """--own-histories asks the server the earlier user turns first and sends its replies back as the history."""
    multi = next(i for i in items if i.id == "multi-pip-control-group")
    args = ["eval", "--against", server.url, "--gold", str(_gold(tmp_path, [multi])), "--split", "all", "--json"]
    args += ["--own-histories", "--out-dir", str(tmp_path / "reports")]
    result = runner.invoke(app, args, env=_env(ingested))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["meta"]["histories"] == "the bot's own replies"
    first, last = server.requests[0], server.requests[-1]
    assert first["message"] == multi.history[0].content and first["history"] == []
    sent = last["history"]
    assert last["message"] == multi.question and sent[0]["content"] == multi.history[0].content
    assert sent[1]["content"] != multi.history[1].content  # the server's reply, not the gold summary
