"""`bpd-rag serve` (the HTTP API and widget under uvicorn) and `bpd-rag report` (feedback, unanswered questions)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bpd_rag.errors import BpdRagError
from bpd_rag.feedback import FeedbackStore, as_dicts
from bpd_rag.redact import printable
from bpd_rag.settings import Settings

out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LimitOption = Annotated[int, typer.Option(min=1, help="Most rows to show.")]

report_app = typer.Typer(
    help="Reports for the clinic's content team, from the feedback database.", no_args_is_help=True
)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {escape(message)}")
    return typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic reports bad BPD_RAG_* values this way
        raise _fail(f"Invalid setting: {exc}") from exc


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the bpd_rag loggers (request ids, kinds and timings; no message text)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["bpd_rag"] = {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    config["handlers"]["bpd_rag"] = {
        "class": "logging.StreamHandler",
        "formatter": "bpd_rag",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["bpd_rag"] = {"handlers": ["bpd_rag"], "level": level.upper(), "propagate": False}
    return config


def limit_model_threads(threads: int) -> None:
    """PyTorch intra-op threads for this process (worker threads started later inherit the limit)."""
    import torch

    torch.set_num_threads(threads)


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: BPD_RAG_API__HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: BPD_RAG_API__PORT, 8000).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(help="Proxies trusted for X-Forwarded-For (so the rate limit sees the real client IP)."),
    ] = None,
) -> None:
    """Serve the HTTP API, the chat widget (/widget.js) and a demo page (/) with uvicorn."""
    import uvicorn

    from bpd_rag.api import create_app

    settings = _settings()
    api = settings.api.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    settings = settings.model_copy(update={"api": api})
    if api.model_threads:
        limit_model_threads(api.model_threads)
    try:
        app = create_app(settings)
    except BpdRagError as exc:
        raise _fail(str(exc)) from exc
    err.print(f"Serving the chat on [bold]http://{api.host}:{api.port}[/] (API docs at /docs). Ctrl-C stops.")
    uvicorn.run(
        app,
        host=api.host,
        port=api.port,
        log_config=log_config(log_level),
        log_level=log_level.lower(),
        access_log=False,  # bpd_rag.api logs every request with its id, kind and timings instead
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
    )


def _store() -> FeedbackStore:
    path = _settings().api.feedback_db
    if not path.exists():
        raise _fail(f"No feedback database at {path} yet. It is created when `bpd-rag serve` answers a question.")
    return FeedbackStore(path)


@report_app.command("feedback")
def report_feedback(as_json: JsonOption = False, limit: LimitOption = 50) -> None:
    """Thumbs up and down on answers, newest first, with the question (e-mails and phone numbers removed)."""
    store = _store()
    try:
        counts, rows = store.rating_counts(), store.feedback(limit)
    except BpdRagError as exc:
        raise _fail(str(exc)) from exc
    if as_json:  # ensure_ascii: JSON escapes C0 controls but not C1 (\x9b starts a terminal escape sequence too)
        out.print_json(json.dumps({"counts": counts, "feedback": as_dicts(rows)}), ensure_ascii=True)
        return
    out.print(f"[bold]{counts['up']}[/] helpful, [bold]{counts['down']}[/] not helpful")
    table = Table("rated", "rating", "kind", "question", "comment")
    for row in rows:
        rating = "👍 up" if row.rating == "up" else "👎 down"
        # What readers typed is shown, never acted on: an escape sequence in a comment must not drive the terminal.
        question, comment = printable(row.question or ""), printable(row.comment)
        table.add_row(row.rated_at, rating, row.kind or "", escape(question), escape(comment))
    if rows:
        out.print(table)


@report_app.command("unanswered")
def report_unanswered(as_json: JsonOption = False, limit: LimitOption = 50) -> None:
    """Questions the sources could not answer (kind no_answer), most asked first: what to write next."""
    store = _store()
    try:
        rows = store.unanswered(limit)
    except BpdRagError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps({"unanswered": as_dicts(rows)}), ensure_ascii=True)
        return
    if not rows:
        out.print("No unanswered questions logged.")
        return
    table = Table("count", "question", "last asked")
    for row in rows:
        table.add_row(str(row.count), escape(printable(row.question)), row.last_asked)
    out.print(table)


@report_app.command("cards")
def report_cards(as_json: JsonOption = False) -> None:
    """Answer cards: which are served, which are past their review date, and which no longer check out."""
    import datetime as dt

    from bpd_rag.cards import load_cards
    from bpd_rag.corpus import load_corpus

    settings = _settings()
    loaded = load_cards(settings.corpus_dir, load_corpus(settings.corpus_dir).documents)
    today = dt.date.today()
    rows = [
        {
            "card": card.id,
            "status": "past review" if card.due(today) else "served",
            "review_due": card.review_due.isoformat(),
            "reviewed_by": card.reviewed_by,
            "question": card.question,
        }
        for card in loaded.cards
    ]
    broken = [{"path": e.path, "reason": e.reason} for e in loaded.errors]
    if as_json:
        out.print_json(json.dumps({"cards": rows, "broken": broken}))
        return
    due = [r for r in rows if r["status"] != "served"]
    out.print(f"{len(rows) - len(due)} cards served, {len(due)} past their review date, {len(broken)} broken.")
    if due:
        table = Table("card", "review was due", "question")
        for r in due:
            table.add_row(escape(r["card"]), r["review_due"], escape(r["question"]))
        out.print(table)
    for b in broken:
        err.print(f"[red]Not served[/] {escape(b['path'])}: {escape(b['reason'])}")
