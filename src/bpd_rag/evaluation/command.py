"""`bpd-rag eval`: run the gold set through the pipeline (or a running server, or the baseline), score it,
write eval/reports/<timestamp>/report.{json,md,html} and print the summary."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bpd_rag.console import progress_bar
from bpd_rag.errors import BpdRagError
from bpd_rag.evaluation.report import build_report, fmt, label, summary, write_report
from bpd_rag.evaluation.runner import (
    DEFAULT_GOLD,
    EvalRun,
    Split,
    default_scorer,
    evaluate,
    load_items,
    scoring_context,
    with_own_histories,
)
from bpd_rag.evaluation.scoring import METRICS
from bpd_rag.evaluation.targets import Target
from bpd_rag.evaluation.thresholds import check_thresholds, load_thresholds
from bpd_rag.settings import Settings
from bpd_rag.types import Message

# What the evaluation needs beyond the bot itself: the `eval` extra of the package.
_EVAL_MODULES = ("matplotlib", "textstat", "langchain_chroma", "langchain_text_splitters")

_out = Console()
_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    """Say what went wrong and how to fix it (the message does), like the other commands."""
    _err.print(f"[bold red]Error:[/] {escape(message)}")
    return typer.Exit(code=1)


def _run_with_progress(title: str, run: Any, total: int) -> EvalRun:
    with progress_bar(title, _err) as update:
        update(0, total, "")
        result: EvalRun = run(update)
        return result


def _print_summary(report: dict[str, Any], folder: Path) -> None:
    has_baseline = bool(report.get("baseline"))
    table = Table(title="bpd-rag eval", title_justify="left")
    table.add_column("metric")
    table.add_column("bpd-rag", justify="right")
    if has_baseline:
        table.add_column("baseline", justify="right")
    table.add_column("gate")
    gates = {t["metric"]: t for t in report["thresholds"]}
    baseline = report["baseline"]["overall"] if has_baseline else {}
    for metric in ["items", *METRICS]:
        if metric not in report["overall"]:
            continue
        gate = gates.get(metric)
        gate_text = ""
        if gate is not None:
            sign = "≥" if gate["bound"] == "min" else "≤"
            gate_text = f"{sign} {gate['limit']:g} " + ("[green]pass[/]" if gate["ok"] else "[bold red]FAIL[/]")
        row = [label(metric), fmt(metric, report["overall"][metric])]
        if has_baseline:
            row.append(fmt(metric, baseline.get(metric)))
        table.add_row(*row, gate_text)
    _out.print(table)
    stages = Counter(i["stage"].split(":")[0].split(" (")[0] for i in report["items"] if i["reasons"])
    if stages:
        _out.print(
            f"{report['failing']} failing items: " + ", ".join(f"{n} {escape(s)}" for s, n in stages.most_common())
        )
    failed = [t["metric"] for t in report["thresholds"] if not t["ok"]]
    if failed:
        _out.print(f"[bold red]Below threshold:[/] {', '.join(failed)}")
    _out.print(f"Report: {escape(str(folder / 'report.html'))} (and report.md, report.json)")


def eval_command(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="URL",
            help="Evaluate a running server through POST /api/chat, e.g. http://127.0.0.1:8000, "
            "instead of the in-process pipeline (retrieval metrics then come from citations only).",
        ),
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also run the plain LangChain baseline and show both side by side.")
    ] = False,
    llm_judge: Annotated[
        bool,
        typer.Option("--llm-judge", help="Add LLM-judged faithfulness (needs BPD_RAG_LLM__BASE_URL)."),
    ] = False,
    gold: Annotated[
        list[Path] | None,
        typer.Option("--gold", help="A gold set (JSONL), repeatable; default eval/gold.jsonl and eval/patient.jsonl."),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="test (reported and gated; never tuned on), dev (what tuning uses) or all.",
            case_sensitive=False,
        ),
    ] = "test",
    thresholds: Annotated[Path, typer.Option("--thresholds", help="Minimums and maximums per metric (TOML).")] = Path(
        "eval/thresholds.toml"
    ),
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Reports are written to OUT_DIR/<timestamp>/.")] = Path(
        "eval/reports"
    ),
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Only items of this category (repeatable).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with code 3 when a metric misses its threshold.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    own_histories: Annotated[
        bool,
        typer.Option(
            "--own-histories",
            help="Replace the assistant turns of each conversation with the bot's own replies to the turns before "
            "them (as the widget sends them back), instead of the gold set's short summaries.",
        ),
    ] = False,
) -> None:
    """Evaluate answers against the gold set: retrieval, reply kinds, citations, phrases, readability, latency."""
    missing = [m for m in _EVAL_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise _fail(
            f"The evaluation needs packages that are not installed ({', '.join(missing)}). "
            "Install them with: pip install 'bpd-rag[eval]' (make test does this)."
        )
    try:
        if split not in ("dev", "test", "all"):
            raise BpdRagError(f"--split must be dev, test or all, not {split!r}.")
        golds = list(gold or DEFAULT_GOLD)
        report, folder = _evaluate(
            against,
            baseline,
            llm_judge,
            golds,
            cast(Split, split),
            thresholds,
            out_dir,
            category or [],
            own_histories,
        )
    except BpdRagError as exc:
        raise _fail(str(exc)) from exc
    except ValueError as exc:  # pydantic reports bad BPD_RAG_* values this way
        raise _fail(f"Invalid setting: {exc}") from exc
    if as_json:
        _out.print_json(json.dumps({**summary(report), "report_dir": str(folder)}))
    else:
        _print_summary(report, folder)
    if check and any(not t["ok"] for t in report["thresholds"]):
        raise typer.Exit(code=3)


def _evaluate(
    against: str | None,
    with_baseline: bool,
    llm_judge: bool,
    gold: list[Path],
    split: Split,
    thresholds_path: Path,
    out_dir: Path,
    categories: list[str],
    own_histories: bool = False,
) -> tuple[dict[str, Any], Path]:
    from bpd_rag.embeddings import build_embedder
    from bpd_rag.pipeline import build_pipeline

    settings = Settings()
    items = load_items(gold, categories, split)
    limits = load_thresholds(thresholds_path, known=[*METRICS, "items"])
    judge = None
    if llm_judge:
        from bpd_rag.judge import LLMJudge

        judge = LLMJudge(settings.llm)
    target: Target
    if against:
        from bpd_rag.evaluation.targets import HttpTarget

        embedder = build_embedder(settings.embedding)
        http = HttpTarget(against, timeout_s=max(60.0, settings.llm.timeout_s * 2))
        target = http

        def reply(message: str, history: list[Message]) -> str:
            return http.chat(message, history)[0].answer

        safety_layer = None
    else:
        from bpd_rag.evaluation.targets import PipelineTarget

        pipeline = build_pipeline(settings)
        embedder = pipeline.embedder
        target = PipelineTarget(pipeline)

        def reply(message: str, history: list[Message]) -> str:
            return pipeline.ask(message, history).answer

        safety_layer = pipeline.guard is not None
    scorer = default_scorer(embedder)
    ctx = scoring_context(settings, scorer, judge, safety_layer)
    asked = with_own_histories(items, reply) if own_histories else items
    run = _run_with_progress("bpd-rag", lambda p: evaluate(asked, target, ctx, p), len(items))
    baseline_run = None
    if with_baseline:
        from bpd_rag.evaluation.baseline import build_baseline
        from bpd_rag.evaluation.targets import BaselineTarget

        plain = build_baseline(settings, embedder)
        try:
            baseline_ctx = scoring_context(settings, scorer, judge, safety_layer=False)
            baseline_target = BaselineTarget(plain)
            baseline_run = _run_with_progress(
                "baseline", lambda p: evaluate(items, baseline_target, baseline_ctx, p), len(items)
            )
        finally:
            plain.close()
    meta = {
        "gold": ", ".join(str(g) for g in gold),
        "split": split,
        "categories": categories or "all",
        "mode": "http" if against else "in-process",
        "support_scorer": f"EmbeddingLexicalSupport ({embedder.name}), support ≥ {settings.answer.support_threshold}",
        "judge": getattr(judge, "name", None),
        "thresholds_file": str(thresholds_path),
        "histories": "the bot's own replies" if own_histories else "the gold set's",
    }
    report = build_report(run, meta, check_thresholds(run.overall, limits), baseline_run)
    return report, write_report(report, out_dir)
