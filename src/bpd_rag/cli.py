"""The bpd-rag command: ingest, ask, chat, serve, report (a thin shell over the Pipeline)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bpd_rag.cli_server import report_app, serve
from bpd_rag.console import progress_bar
from bpd_rag.errors import BpdRagError
from bpd_rag.evaluation.command import eval_command
from bpd_rag.pipeline import Pipeline, build_pipeline
from bpd_rag.render import answer_text, cli_text
from bpd_rag.settings import Settings
from bpd_rag.types import Answer, Message

app = typer.Typer(
    help="bpd-rag: answers about ketamine therapy for BPD from the clinic's sources, with citations.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {escape(str(exc))}")
    return typer.Exit(code=1)


def _pipeline() -> Pipeline:
    try:
        return build_pipeline(Settings())
    except BpdRagError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:  # pydantic reports bad BPD_RAG_* values this way
        raise _fail(ValueError(f"Invalid setting: {exc}")) from exc


def render_answer(answer: Answer, console: Console = out) -> None:
    """Print an answer for people (bpd_rag.render.cli_text), coloured by kind."""
    style = {"crisis": "bold red", "refusal": "yellow", "no_answer": "yellow"}.get(answer.kind)
    console.print(escape(cli_text(answer)), style=style)


@app.command()
def ingest(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-embed everything into a fresh index.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Build or refresh the index from the corpus folder (only changed documents are re-embedded)."""
    pipeline = _pipeline()
    try:
        if as_json:
            report = pipeline.ingest(rebuild=rebuild)
        else:
            with progress_bar("Embedding", err) as update:
                report = pipeline.ingest(
                    progress=lambda done, total, doc_id: update(done, total, doc_id or "done"), rebuild=rebuild
                )
    except BpdRagError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(
            f"Indexed {report.chunks_total} chunks: {len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {len(report.unchanged)} unchanged"
            f" ({report.chunks_written} chunks embedded)."
        )
        for warning in report.warnings:
            err.print(f"[yellow]Warning:[/] {escape(warning)}")
        for error in report.errors:
            err.print(f"[red]Skipped[/] {escape(error.path)}: {escape(error.reason)}")
        for doc_id in report.kept_previous:
            err.print(f"[yellow]Kept the previous version of[/] {escape(doc_id)} (its file could not be read).")
    if report.errors:
        raise typer.Exit(code=2)


HISTORY_FORMAT = '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]'


def _load_history(path: Path | None) -> list[Message]:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("it is not a list")
        return [Message.model_validate(m) for m in data]
    except OSError as exc:
        raise _fail(ValueError(f"Cannot read the history file {path} ({exc.strerror or exc}).")) from exc
    except ValueError as exc:
        reason = "it is not valid JSON" if isinstance(exc, json.JSONDecodeError) else "its turns are not in the format"
        raise _fail(
            ValueError(f"The history file {path} cannot be used: {reason}. Expected a JSON list like {HISTORY_FORMAT}")
        ) from exc


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    as_json: JsonOption = False,
    history: Annotated[
        Path | None,
        typer.Option(
            help="JSON file with earlier turns, oldest first, for follow-up questions: a list like "
            + HISTORY_FORMAT.replace("[", "[[").replace("]", "]]")
            + ' (roles "user" and "assistant").'
        ),
    ] = None,
) -> None:
    """Answer one question with numbered citations."""
    if not question.strip():
        raise _fail(ValueError('The question is empty. Example: bpd-rag ask "What dose was used in the pilot trial?"'))
    turns = _load_history(history)
    pipeline = _pipeline()
    try:
        answer = pipeline.ask(question, turns)
    except BpdRagError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(answer.model_dump_json())
    else:
        render_answer(answer)


@app.command()
def chat() -> None:
    """Talk with the bot in the terminal; earlier turns are used for follow-up questions. Ctrl-D ends."""
    from bpd_rag.safety.guard import ConversationRisk

    pipeline = _pipeline()
    turns: list[Message] = []
    conversation = ConversationRisk()  # a risk raised earlier in the session still counts
    out.print("[bold]bpd-rag chat[/] — ask about ketamine therapy for BPD. Type 'exit' or press Ctrl-D to leave.")
    while True:
        try:
            question = out.input("[bold green]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if question.strip().lower() in {"exit", "quit"}:
            return
        if not question.strip():
            continue
        try:
            answer = pipeline.ask(question, turns, conversation)
        except BpdRagError as exc:
            err.print(f"[bold red]Error:[/] {escape(str(exc))}")
            continue
        render_answer(answer)
        out.print()
        turns += [Message(role="user", content=question), Message(role="assistant", content=answer_text(answer))]


app.command()(serve)
app.add_typer(report_app, name="report")


app.command("eval")(eval_command)


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except BrokenPipeError:  # `bpd-rag ask ... | head` is fine
        sys.exit(0)
