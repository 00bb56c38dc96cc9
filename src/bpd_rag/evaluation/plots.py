"""The report's charts as inline PNG data URIs (matplotlib, no display, no files, no external assets)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

# Per-category charts show these metrics, each where the category has items it applies to.
CATEGORY_METRICS = (
    ("kind_accuracy", "kind accuracy"),
    ("required_phrase_recall", "required phrases"),
    ("hit_at_k", "hit@k"),
    ("disclaimer_rate", "disclaimer"),
)
COLORS = ("#2b6cb0", "#38a169", "#dd6b20", "#805ad5")


def _data_uri(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def category_bars(categories: Mapping[str, Mapping[str, float | int | None]]) -> str:
    """Grouped bars: per category, the share of items right on each of CATEGORY_METRICS."""
    from matplotlib.figure import Figure

    names = list(categories)
    figure = Figure(figsize=(11, 4.2))
    ax = figure.subplots()
    width = 0.8 / len(CATEGORY_METRICS)
    for i, ((metric, label), color) in enumerate(zip(CATEGORY_METRICS, COLORS, strict=True)):
        xs: list[float] = []
        ys: list[float] = []
        for x, name in enumerate(names):
            value = categories[name].get(metric)
            if value is not None:
                xs.append(x + (i - (len(CATEGORY_METRICS) - 1) / 2) * width)
                ys.append(float(value))
        ax.bar(xs, ys, width=width, label=label, color=color)
        for bar_x, y in zip(xs, ys, strict=True):
            if y == 0:  # a zero must not look like "does not apply"
                ax.text(bar_x, 0.01, "0", ha="center", va="bottom", fontsize=7, color=color, fontweight="bold")
    ax.set_xticks(range(len(names)), [f"{n}\n({categories[n].get('items')})" for n in names], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of items")
    ax.set_title("Per category (items in brackets; a missing bar means the metric does not apply)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(CATEGORY_METRICS), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _data_uri(figure)


def comparison_bars(
    ours: Mapping[str, float | int | None],
    baseline: Mapping[str, float | int | None],
    metrics: Sequence[tuple[str, str, bool]],
) -> str:
    """Horizontal bars of ours against the baseline for shares (0-1); metrics are (name, label, higher is better)."""
    from matplotlib.figure import Figure

    shown = [m for m in metrics if ours.get(m[0]) is not None or baseline.get(m[0]) is not None]
    figure = Figure(figsize=(7.5, 0.36 * len(shown) + 1.4))
    ax = figure.subplots()
    ys = list(range(len(shown)))
    for offset, values, name, color in (
        (-0.2, ours, "bpd-rag", COLORS[0]),
        (0.2, baseline, "LangChain baseline", "#a0aec0"),
    ):
        widths = [float(values.get(m) or 0) for m, _, _ in shown]
        ax.barh([y + offset for y in ys], widths, height=0.4, label=name, color=color)
        for y, w in zip(ys, widths, strict=True):
            ax.text(w + 0.01, y + offset, f"{w:.2f}", va="center", fontsize=6, color="#4a5568")
    ax.set_yticks(ys, [label if higher else f"{label} (lower is better)" for _, label, higher in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("bpd-rag against the baseline (shares of items)")
    return _data_uri(figure)


def latency_histogram(latencies: Sequence[float], p50: float | None, p95: float | None) -> str:
    """Histogram of seconds per question, with p50 and p95 marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2))
    ax = figure.subplots()
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 4)), color=COLORS[0], alpha=0.85)
    for value, label, style in ((p50, "p50", "--"), (p95, "p95", ":")):
        if value is not None:
            ax.axvline(value, color="#c53030", linestyle=style, label=f"{label} {value:.2f} s")
    ax.set_xlabel("seconds per question")
    ax.set_ylabel("questions")
    ax.set_title("Latency")
    ax.legend(fontsize=8)
    return _data_uri(figure)
