"""The evaluation report: report.json (everything), report.md (for reviews) and a self-contained report.html
(inline CSS and PNG charts, no scripts) in eval/reports/<timestamp>/."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bpd_rag.evaluation.metrics import KINDS
from bpd_rag.evaluation.runner import EvalRun
from bpd_rag.evaluation.scoring import METRICS
from bpd_rag.evaluation.thresholds import ThresholdResult

Report = dict[str, Any]

# Columns of the per-category table.
CATEGORY_COLUMNS = (
    "items",
    "pass_rate",
    "kind_accuracy",
    "hit_at_k",
    "mrr",
    "required_phrase_recall",
    "disclaimer_rate",
    "citation_recall",
    "readability_grade",
)


def _run_dict(run: EvalRun, with_items: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": run.target,
        "retrieval_source": run.retrieval_source,
        "overall": run.overall,
        "categories": run.categories,
        "confusion": run.confusion,
        "failing": len(run.failures),
    }
    if with_items:
        out["items"] = [s.model_dump(mode="json") for s in run.scores]
    return out


def build_report(
    run: EvalRun,
    meta: Mapping[str, Any],
    thresholds: Sequence[ThresholdResult] = (),
    baseline: EvalRun | None = None,
) -> Report:
    """Everything the files show, as JSON-ready data."""
    report: Report = {
        "meta": {"created": dt.datetime.now().astimezone().isoformat(timespec="seconds"), **meta},
        **_run_dict(run),
        "thresholds": [
            {
                "metric": r.threshold.metric,
                "bound": r.threshold.bound,
                "limit": r.threshold.limit,
                "value": r.value,
                "ok": r.ok,
            }
            for r in thresholds
        ],
        "baseline": _run_dict(baseline) if baseline is not None else None,
    }
    return report


def summary(report: Report) -> dict[str, Any]:
    """The report without per-item detail (what `bpd-rag eval --json` prints)."""
    out = {k: v for k, v in report.items() if k not in ("items", "baseline")}
    if report.get("baseline"):
        out["baseline"] = {k: v for k, v in report["baseline"].items() if k != "items"}
    return out


def write_report(report: Report, out_dir: Path) -> Path:
    """Write report.json, report.md and report.html into a new timestamped folder under out_dir."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(out_dir) / stamp
    suffix = 1
    while folder.exists():  # two runs within a second
        suffix += 1
        folder = Path(out_dir) / f"{stamp}-{suffix}"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
    return folder


# --- formatting ----------------------------------------------------------------------------------------


def fmt(metric: str, value: Any) -> str:
    """A metric value for people: shares with 3 decimals, counts as integers, missing as a dash."""
    if value is None:
        return "—"
    if metric == "items" or isinstance(value, bool):
        return str(value)
    info = METRICS.get(metric)
    if info is not None and not info.fraction:
        return f"{float(value):.2f}"
    return f"{float(value):.3f}"


def label(metric: str) -> str:
    info = METRICS.get(metric)
    return info.label if info else metric


def _threshold_text(report: Report, metric: str) -> tuple[str, bool | None]:
    for t in report.get("thresholds", []):
        if t["metric"] == metric:
            return (f"{'≥' if t['bound'] == 'min' else '≤'} {t['limit']:g}", bool(t["ok"]))
    return ("", None)


def _metric_rows(report: Report) -> list[tuple[str, str, str, str, str]]:
    """(metric, label, ours, baseline, gate) for every metric measured in either run."""
    baseline = (report.get("baseline") or {}).get("overall", {})
    rows = []
    for metric in ["items", *METRICS]:
        ours = report["overall"].get(metric)
        theirs = baseline.get(metric)
        if metric not in report["overall"] and metric not in baseline:
            continue
        gate, ok = _threshold_text(report, metric)
        status = "" if ok is None else ("pass" if ok else "FAIL")
        rows.append(
            (
                metric,
                label(metric),
                fmt(metric, ours),
                fmt(metric, theirs) if baseline else "",
                f"{gate} {status}".strip(),
            )
        )
    return rows


def _failing(report: Report) -> list[dict[str, Any]]:
    return [i for i in report.get("items", []) if i["reasons"]]


def _notes(report: Report) -> list[str]:
    meta = report["meta"]
    notes = [
        f"Retrieval metrics come from {report['retrieval_source']}"
        + (f"; k = {report['target'].get('top_k')}." if report["target"].get("top_k") else "."),
        f"Citation support is scored by {meta.get('support_scorer', 'the default scorer')}.",
        "Readability is the Flesch-Kincaid grade of answers without citation markers, source names and the "
        "bot's fixed texts; patient education aims at about grade 8.",
    ]
    if report["target"].get("safety_layer") is False:
        notes.append("This pipeline has no safety layer attached: crisis, advice and injection items fail by design.")
    if report.get("baseline"):
        notes.append(
            f"Baseline: {report['baseline']['target'].get('target')}; its retrieval metrics are at k = "
            f"{report['baseline']['target'].get('top_k')}."
        )
    return notes


# --- Markdown --------------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """report.md: metrics against the baseline and the gate, per category, confusion matrix, failing items."""
    meta = report["meta"]
    has_baseline = bool(report.get("baseline"))
    lines = [
        f"# bpd-rag evaluation — {meta['created']}",
        "",
        f"Target: {report['target'].get('target')} · gold: {meta.get('gold')} ({report['overall']['items']} items)"
        f" · failing items: {report['failing']}",
        "",
        *[f"- {n}" for n in _notes(report)],
        "",
        "## Metrics",
        "",
        "| metric | bpd-rag | " + ("baseline | " if has_baseline else "") + "gate |",
        "|---|---|" + ("---|" if has_baseline else "") + "---|",
    ]
    for _metric, name, ours, theirs, gate in _metric_rows(report):
        lines.append(f"| {name} | {ours} | " + (f"{theirs} | " if has_baseline else "") + f"{gate} |")
    lines += ["", "## Per category", ""]
    lines.append("| category | " + " | ".join(label(c) for c in CATEGORY_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(CATEGORY_COLUMNS))
    for category, metrics in report["categories"].items():
        lines.append(f"| {category} | " + " | ".join(fmt(c, metrics.get(c)) for c in CATEGORY_COLUMNS) + " |")
    lines += ["", "## Reply kinds (rows: expected, columns: got)", ""]
    columns = [*KINDS, "error"]
    lines.append("| expected \\ got | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for expected in KINDS:
        row = report["confusion"].get(expected, {})
        lines.append(f"| {expected} | " + " | ".join(str(row.get(c, 0)) for c in columns) + " |")
    failing = _failing(report)
    lines += ["", f"## Failing items ({len(failing)})", ""]
    for item in failing:
        answer = item.get("answer") or {}
        reply = answer.get("answer", item.get("error") or "")
        lines += [
            f"### {item['id']} ({item['category']})",
            "",
            f"- step: **{item.get('stage')}**",
            f"- question: {_md_escape(item['question'])}",
            *[f"- reason: {_md_escape(r)}" for r in item["reasons"]],
            f"- reply ({answer.get('kind', 'error')}): {_md_escape(reply)[:600]}",
            "",
        ]
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1a202c;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
.meta{color:#4a5568}.notes li{color:#4a5568;font-size:.92em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #e2e8f0;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f7fafc}
.pass{color:#276749;font-weight:600}.fail{color:#c53030;font-weight:700}
.cards{display:grid;grid-template-columns:1fr;gap:12px}
.card{border:1px solid #e2e8f0;border-left:4px solid #c53030;border-radius:6px;padding:10px 14px;background:#fff}
.card h3{margin:0 0 4px;font-size:1.05em}.tag{display:inline-block;background:#edf2f7;border-radius:4px;
padding:0 6px;font-size:.82em;margin-left:6px;color:#2d3748}.stage{color:#9c4221;font-weight:600}
.reply{white-space:pre-wrap;background:#f7fafc;border-radius:4px;padding:6px 8px;font-size:.9em}
.cites{font-size:.85em;color:#2d3748}.cites li{margin:2px 0}.quote{color:#4a5568;font-style:italic}
ul.reasons{margin:4px 0 6px 18px;padding:0;color:#9b2c2c;font-size:.9em}
img{max-width:100%}.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
td.what,th.what{text-align:left;color:#4a5568;font-size:.9em}td.cell0{color:#a0aec0}td.diag{background:#c6f6d5}td.off{background:#fed7d7}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_metrics(report: Report) -> str:
    has_baseline = bool(report.get("baseline"))
    head = (
        "<tr><th>metric</th><th>bpd-rag</th>"
        + ("<th>baseline</th>" if has_baseline else "")
        + '<th>gate</th><th class="what">what it measures</th></tr>'
    )
    rows = []
    for metric, name, ours, theirs, gate in _metric_rows(report):
        css = "fail" if gate.endswith("FAIL") else ("pass" if gate.endswith("pass") else "")
        info = METRICS.get(metric)
        what = info.description + ("" if info.higher_is_better else " (lower is better)") if info else "gold items"
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e(ours)}</td>"
            + (f"<td>{_e(theirs)}</td>" if has_baseline else "")
            + f'<td class="{css}">{_e(gate)}</td><td class="what">{_e(what)}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _html_categories(report: Report) -> str:
    head = "<tr><th>category</th>" + "".join(f"<th>{_e(label(c))}</th>" for c in CATEGORY_COLUMNS) + "</tr>"
    rows = [
        f"<tr><td>{_e(cat)}</td>" + "".join(f"<td>{_e(fmt(c, m.get(c)))}</td>" for c in CATEGORY_COLUMNS) + "</tr>"
        for cat, m in report["categories"].items()
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _html_confusion(confusion: Mapping[str, Mapping[str, int]]) -> str:
    columns = [*KINDS, "error"]
    head = "<tr><th>expected \\ got</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for expected in KINDS:
        cells = []
        for c in columns:
            n = confusion.get(expected, {}).get(c, 0)
            css = "cell0" if n == 0 else ("diag" if c == expected else "off")
            cells.append(f'<td class="{css}">{n}</td>')
        rows.append(f"<tr><td>{_e(expected)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _html_item(item: Mapping[str, Any]) -> str:
    answer = item.get("answer") or {}
    history = "".join(f"<div class='quote'>{_e(m['role'])}: {_e(m['content'])}</div>" for m in item.get("history", []))
    cites = "".join(
        f"<li>[{_e(c['id'])}] <b>{_e(c['doc_id'])}</b> ({_e(c['source_type'])}, offset {_e(c.get('start'))}): "
        f"<span class='quote'>“{_e(c['quote'])}”</span></li>"
        for c in answer.get("citations", [])
    )
    reply = answer.get("answer") if answer else f"(no reply: {item.get('error')})"
    extras = []
    if answer.get("disclaimer"):
        extras.append(f"<div class='quote'>Disclaimer: {_e(answer['disclaimer'])}</div>")
    for conflict in answer.get("conflicts", []):
        extras.append(f"<div class='quote'>Conflict {_e(conflict['citation_ids'])}: {_e(conflict['summary'])}</div>")
    got = answer.get("kind", "error")
    return (
        f"<div class='card' id='{_e(item['id'])}'><h3>{_e(item['id'])}<span class='tag'>{_e(item['category'])}</span>"
        f"<span class='tag'>expected {_e(item['expected_kind'])}, got {_e(got)}</span></h3>"
        f"<div class='stage'>Failing step: {_e(item.get('stage'))}</div>"
        f"<ul class='reasons'>{''.join(f'<li>{_e(r)}</li>' for r in item['reasons'])}</ul>"
        f"{history}<div><b>Q:</b> {_e(item['question'])}</div>"
        f"<div class='reply'>{_e(reply)}</div>{''.join(extras)}"
        + (f"<ol class='cites'>{cites}</ol>" if cites else "")
        + "</div>"
    )


def render_html(report: Report) -> str:
    """report.html: one file with inline CSS and charts; opens in any browser without network."""
    from bpd_rag.evaluation import plots

    meta = report["meta"]
    charts = [plots.category_bars(report["categories"])]
    if report.get("baseline"):
        shares = [(m, i.label, i.higher_is_better) for m, i in METRICS.items() if i.fraction]
        charts.append(plots.comparison_bars(report["overall"], report["baseline"]["overall"], shares))
    latencies = [float(i["latency_s"]) for i in report.get("items", [])]
    if latencies:
        charts.append(
            plots.latency_histogram(
                latencies, report["overall"].get("latency_p50_s"), report["overall"].get("latency_p95_s")
            )
        )
    failing = _failing(report)
    gate = report.get("thresholds", [])
    gate_failed = [t for t in gate if not t["ok"]]
    gate_line = (
        f"<p class='{'fail' if gate_failed else 'pass'}'>Gate: {len(gate) - len(gate_failed)} of {len(gate)} "
        "thresholds met"
        + (": " + ", ".join(_e(t["metric"]) for t in gate_failed) + " failed" if gate_failed else "")
        + "</p>"
        if gate
        else ""
    )
    baseline_confusion = (
        f"<h3>Baseline</h3>{_html_confusion(report['baseline']['confusion'])}" if report.get("baseline") else ""
    )
    body = f"""
<h1>bpd-rag evaluation</h1>
<div class="meta">{_e(meta["created"])} · {_e(report["target"].get("target"))} · gold {_e(meta.get("gold"))}
({_e(report["overall"]["items"])} items) · {_e(report["failing"])} failing</div>
{gate_line}
<ul class="notes">{"".join(f"<li>{_e(n)}</li>" for n in _notes(report))}</ul>
<h2>Metrics</h2>
<div class="charts"><div>{_html_metrics(report)}</div></div>
<h2>Charts</h2>
<div class="charts">{"".join(f'<img alt="chart" src="{c}">' for c in charts)}</div>
<h2>Per category</h2>
{_html_categories(report)}
<h2>Reply kinds</h2>
<p class="meta">Rows: the kind the gold set expects; columns: the kind the bot replied with.</p>
{_html_confusion(report["confusion"])}
{baseline_confusion}
<h2>Failing items ({len(failing)})</h2>
<div class="cards">{"".join(_html_item(i) for i in failing)}</div>
"""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>bpd-rag evaluation {_e(meta['created'])}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
