"""The card threshold is read off a curve fitted to every dev question, so one question moves it little."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

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
