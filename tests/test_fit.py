"""The card threshold is read off a curve fitted to every dev question, so one question moves it little; the
matcher's floor is kept in its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from bpd_rag.answering.cards import FEATURES, MatcherModel
from bpd_rag.answering.fit import CARD_RIGHT, marginal_threshold


def _questions(seed: int) -> tuple[list[float], list[bool]]:
    """Best-card probabilities whose chance of being right rises with the probability itself."""
    rng = np.random.default_rng(seed)
    probability = rng.uniform(0.05, 0.99, 300)
    right = rng.uniform(size=300) < probability
    return probability.tolist(), right.tolist()


def test_threshold_is_where_the_best_card_is_right_card_right_of_the_time() -> None:
    probability, right = _questions(1)
    threshold = marginal_threshold(probability, right)
    # Right with probability p by construction: the threshold lands near CARD_RIGHT.
    assert abs(threshold - CARD_RIGHT) < 0.12


def test_one_question_more_moves_the_threshold_little() -> None:
    probability, right = _questions(2)
    before = marginal_threshold(probability, right)
    after = marginal_threshold([*probability, 0.9], [*right, False])
    assert abs(before - after) < 0.03


def test_a_probability_that_says_nothing_serves_no_card() -> None:
    rng = np.random.default_rng(3)
    probability = rng.uniform(0.05, 0.99, 200)
    right = probability < 0.5  # right only when the matcher is unsure: never worth serving on its say
    assert marginal_threshold(probability.tolist(), right.tolist()) == 1.0


def test_the_matcher_floor_is_saved_and_loaded(tmp_path: Path) -> None:
    model = MatcherModel(weights={f: 1.0 for f in FEATURES}, bias=0.0, threshold=0.5, meta={}, floor=0.4)
    model.save(tmp_path / "m.json")
    assert MatcherModel.load(tmp_path / "m.json").floor == 0.4


def test_a_matcher_file_without_a_floor_serves_as_before(tmp_path: Path) -> None:
    data = {"features": list(FEATURES), "weights": {f: 1.0 for f in FEATURES}, "bias": 0.0, "threshold": 0.5}
    (tmp_path / "m.json").write_text(json.dumps(data), "utf-8")
    assert MatcherModel.load(tmp_path / "m.json").floor == 0.0


def test_the_shipped_matcher_has_a_floor_chosen_on_dev() -> None:
    model = MatcherModel.load()
    assert 0.0 < model.floor < 1.0 and model.meta["floor"] == model.floor
