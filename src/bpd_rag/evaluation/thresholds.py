"""The quality gate: minimums and maximums per metric from eval/thresholds.toml, checked against a run."""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bpd_rag.errors import ConfigurationError


@dataclass(frozen=True)
class Threshold:
    metric: str
    bound: Literal["min", "max"]
    limit: float


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    value: float | None

    @property
    def ok(self) -> bool:
        if self.value is None:
            return False  # a metric that could not be measured cannot pass its gate
        if self.threshold.bound == "min":
            return self.value >= self.threshold.limit
        return self.value <= self.threshold.limit

    def describe(self) -> str:
        """One line for people: "hit_at_k = 0.810 < min 0.850"."""
        t = self.threshold
        value = "not measured" if self.value is None else f"{self.value:.3f}"
        if self.ok:
            return f"{t.metric} = {value} ({t.bound} {t.limit:g}, ok)"
        return f"{t.metric} = {value} ({'below min' if t.bound == 'min' else 'above max'} {t.limit:g})"


def parse_thresholds(text: str, known: Collection[str] | None = None, source: str = "thresholds") -> list[Threshold]:
    """Read ``[min]`` and ``[max]`` tables of metric = number; unknown tables or metrics are errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source} is not valid TOML: {exc}") from exc
    unknown_tables = set(data) - {"min", "max"}
    if unknown_tables:
        raise ConfigurationError(f"{source}: unknown table(s) {sorted(unknown_tables)}; use [min] and [max].")
    out: list[Threshold] = []
    for bound in ("min", "max"):
        table = data.get(bound, {})
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{source}: [{bound}] must be a table of metric = number.")
        for metric, limit in table.items():
            if isinstance(limit, bool) or not isinstance(limit, int | float):
                raise ConfigurationError(f"{source}: {bound}.{metric} must be a number, not {limit!r}.")
            if known is not None and metric not in known:
                raise ConfigurationError(
                    f"{source}: unknown metric {metric!r} in [{bound}]. Known metrics: {', '.join(sorted(known))}."
                )
            out.append(Threshold(metric, bound, float(limit)))
    return out


def load_thresholds(path: Path, known: Collection[str] | None = None) -> list[Threshold]:
    """Thresholds from a TOML file (see eval/thresholds.toml)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read thresholds from {path} ({exc}). Pass --thresholds PATH.") from exc
    return parse_thresholds(text, known, str(path))


def check_thresholds(metrics: Mapping[str, float | int | None], thresholds: list[Threshold]) -> list[ThresholdResult]:
    """Each threshold with the run's value (failing when the metric is missing)."""
    results = []
    for t in thresholds:
        value = metrics.get(t.metric)
        results.append(ThresholdResult(t, None if value is None else float(value)))
    return results
