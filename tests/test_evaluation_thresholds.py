"""eval/thresholds.toml: parsing, and the gate failing when a metric misses its bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from bpd_rag.errors import ConfigurationError
from bpd_rag.evaluation.scoring import METRICS
from bpd_rag.evaluation.thresholds import Threshold, check_thresholds, load_thresholds, parse_thresholds

ROOT = Path(__file__).resolve().parents[1]
KNOWN = [*METRICS, "items"]


def test_parses_min_and_max_tables() -> None:
    text = "[min]\nhit_at_k = 0.85\nkind_accuracy = 1\n\n[max]\ncrisis_false_positive_rate = 0.0\n"
    assert parse_thresholds(text, KNOWN) == [
        Threshold("hit_at_k", "min", 0.85),
        Threshold("kind_accuracy", "min", 1.0),
        Threshold("crisis_false_positive_rate", "max", 0.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[min]\nhit_at_kk = 0.8\n", "unknown metric 'hit_at_kk'"),
        ("[minimum]\nhit_at_k = 0.8\n", "unknown table"),
        ('[min]\nhit_at_k = "high"\n', "must be a number"),
        ("[min]\nhit_at_k = true\n", "must be a number"),
        ("[min\nhit_at_k = 0.8\n", "not valid TOML"),
    ],
)
def test_bad_thresholds_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_thresholds(text, KNOWN)


def test_gate_fails_below_a_minimum_above_a_maximum_and_when_not_measured() -> None:
    limits = parse_thresholds(
        "[min]\nhit_at_k = 0.9\ncrisis_recall = 0.5\n[max]\nforbidden_phrase_violation_rate = 0.0\n", KNOWN
    )
    results = check_thresholds(
        {"hit_at_k": 0.85, "crisis_recall": None, "forbidden_phrase_violation_rate": 0.04}, limits
    )
    assert [r.ok for r in results] == [False, False, False]
    assert [r.describe() for r in results] == [
        "hit_at_k = 0.850 (below min 0.9)",
        "crisis_recall = not measured (below min 0.5)",
        "forbidden_phrase_violation_rate = 0.040 (above max 0)",
    ]
    passing = check_thresholds({"hit_at_k": 0.9, "crisis_recall": 1, "forbidden_phrase_violation_rate": 0.0}, limits)
    assert all(r.ok for r in passing)


def test_the_repository_thresholds_parse_and_name_known_metrics() -> None:
    limits = load_thresholds(ROOT / "eval" / "thresholds.toml", KNOWN)
    assert {t.metric for t in limits} >= {
        "hit_at_k",
        "kind_accuracy",
        "citation_validity",
        "crisis_false_positive_rate",
    }


def test_missing_thresholds_file_says_which_option_to_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--thresholds"):
        load_thresholds(tmp_path / "nope.toml")
