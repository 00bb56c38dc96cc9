"""Files shipped inside the package (data/...) and the fitted logistic models stored among them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bpd_rag.errors import ConfigurationError

REFIT = "Refit it with: python -m bpd_rag.answering.fit"


def packaged(*parts: str) -> Path:
    """A file or folder under the package's data/ (works from a wheel, not only from a checkout)."""
    return Path(str(resources.files("bpd_rag").joinpath("data", *parts)))


def read_logistic(
    path: Path, features: Sequence[str], threshold_key: str, what: str
) -> tuple[dict[str, float], float, float, dict[str, Any]]:
    """Weights per feature, bias, threshold and meta of a fitted logistic model stored as JSON."""
    try:
        data = json.loads(path.read_text("utf-8"))
        weights = {f: float(data["weights"][f]) for f in features}
        return weights, float(data["bias"]), float(data[threshold_key]), data.get("meta", {})
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"The {what} {path} cannot be read ({exc}). {REFIT}") from exc
