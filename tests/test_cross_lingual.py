"""Questions in other languages: the English card closest to them by multilingual-e5, served with a note in
their language when the fitted match is sure enough; the fit, the cache and a damaged model file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bpd_rag.answering.cards import CrossLingualMatcher, CrossLingualModel
from bpd_rag.cards import Card
from bpd_rag.errors import ConfigurationError
from bpd_rag.pipeline import Pipeline
from bpd_rag.types import SafetyDecision

DATA = Path(__file__).resolve().parents[1] / "data" / "answering" / "cross_lingual.yaml"


class WordEncoder:
    """A test double: one axis per known word, so a text is close to the texts that share its words."""

    name = "word-double"

    def __init__(self) -> None:
        self.words = ["dosis", "dose", "efecto", "effect", "vejiga", "bladder"]
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = np.zeros((len(texts), len(self.words) + 1), dtype=np.float32)
        for n, text in enumerate(texts):
            for word in text.lower().split():
                if word in self.words:
                    rows[n, self.words.index(word) // 2] += 1.0  # "dosis" and "dose" on one axis
            rows[n, -1] = 0.1
            rows[n] /= np.linalg.norm(rows[n])
        return rows


def _card(card_id: str, question: str) -> Card:
    today = dt.date(2026, 1, 1)
    return Card(
        id=card_id, question=question, phrasings=(), statements=(), quotes={}, reviewed_by="x",
        reviewed_on=today, review_due=today,
    )  # fmt: skip


def _matcher(tmp_path: Path, encoder: WordEncoder, threshold: float = 0.5) -> CrossLingualMatcher:
    cards = [_card("dose", "what dose"), _card("effect", "how long does the effect last"), _card("bladder", "bladder")]
    model = CrossLingualModel(cosine=10.0, lead=10.0, bias=-8.0, threshold=threshold, meta={})
    return CrossLingualMatcher(cards, encoder, model, cache_dir=tmp_path)


def test_the_closest_card_is_served_when_the_model_is_sure_and_not_otherwise(tmp_path: Path) -> None:
    matcher = _matcher(tmp_path, WordEncoder())
    match = matcher.match("que dosis usaron")
    assert match is not None and match.card.id == "dose" and match.probability >= 0.5
    assert matcher.match("hola que tal") is None  # close to no card more than to the others
    assert _matcher(tmp_path, WordEncoder(), threshold=1.0).match("que dosis usaron") is None


def test_card_vectors_are_cached_on_disk_and_a_damaged_cache_is_computed_again(tmp_path: Path) -> None:
    encoder = WordEncoder()
    _matcher(tmp_path, encoder).prepare()
    assert encoder.calls == 1 and len(list(tmp_path.glob("cards-multilingual-*.npy"))) == 1
    again = WordEncoder()
    _matcher(tmp_path, again).prepare()
    assert again.calls == 0  # read from the cache
    next(tmp_path.glob("cards-multilingual-*.npy")).write_bytes(b"not numpy")
    damaged = WordEncoder()
    _matcher(tmp_path, damaged).prepare()
    assert damaged.calls == 1


def test_a_damaged_model_file_says_how_to_refit_it(tmp_path: Path) -> None:
    broken = tmp_path / "cross_lingual.json"
    broken.write_text('{"weights": {"cosine": 1}}', "utf-8")
    with pytest.raises(ConfigurationError, match=r"python -m bpd_rag\.answering\.fit"):
        CrossLingualModel.load(broken)


def test_the_threshold_is_where_served_dev_cards_are_right_often_enough() -> None:
    pytest.importorskip("sklearn")
    from bpd_rag.answering.fit import CROSS_LINGUAL_RIGHT, fit_cross_lingual

    cards = [_card(f"c{n}", "") for n in range(3)]

    class Rows:
        """Features from the item itself: (closest card, cosine, lead)."""

        encoder = WordEncoder()

        def __init__(self) -> None:
            self.cards = cards

        def features(self, text: str) -> tuple[int, float, float]:
            index, cosine, lead = text.split()
            return int(index), float(cosine), float(lead)

    rng = np.random.default_rng(7)
    items = []
    for _ in range(200):
        lead = float(rng.uniform(0, 0.06))
        right = rng.uniform() < min(1.0, lead / 0.03)  # a clearer lead is right more often
        items.append({"text": f"0 0.9 {lead}", "cards": ["c0"] if right else ["c1"], "split": "dev"})
    model = fit_cross_lingual(Rows(), items)  # type: ignore[arg-type]
    assert model.lead > 0
    served = [i for i in items if model.probability(0.9, float(i["text"].split()[2])) >= model.threshold]
    assert served and sum(i["cards"] == ["c0"] for i in served) / len(served) >= CROSS_LINGUAL_RIGHT
    assert model.meta["dev"]["served"] == len(served)


@pytest.mark.real_model
def test_a_question_in_spanish_gets_the_english_card_with_a_note_in_spanish(real_pipeline: Pipeline) -> None:
    # The safety layer (not part of this pipeline) identifies the language; here its decision is given.
    decision = SafetyDecision(language="es")
    answer = real_pipeline.reply("cuanto tiempo duran los efectos de la ketamina?", [], decision)
    assert answer.kind == "answer" and answer.answerer == "card:how-long-effects-last"
    assert answer.statements[0].text.startswith("Las fuentes de la clínica están en inglés")
    assert answer.citations and answer.disclaimer
    # A short message the identifier only leans to Spanish for is read the same way.
    leaning = real_pipeline.reply("es peligrosa la ketamina", [], SafetyDecision(language="en", leaning="es"))
    assert leaning.answerer == "card:is-ketamine-safe" and leaning.statements[0].text.startswith("Las fuentes")
    # Read as English, it is matched in English only.
    assert real_pipeline.reply("es peligrosa la ketamina", [], SafetyDecision()).kind == "no_answer"


@pytest.mark.real_model
def test_an_off_topic_question_in_spanish_gets_no_card(real_pipeline: Pipeline) -> None:
    answer = real_pipeline.reply("donde puedo comprar zapatos baratos", [], SafetyDecision(language="es"))
    assert answer.kind == "no_answer" and answer.statements[0].text.startswith("No encontré")


@pytest.mark.real_model
def test_on_the_test_split_served_cards_are_mostly_right(real_pipeline: Pipeline) -> None:
    """The gate: figures on the test items of data/answering/cross_lingual.yaml (never fitted on), from the
    shipped model; minimums set from the run that fitted it (precision 0.82, 18 of 35 answered right)."""
    import yaml

    from bpd_rag.answering.fit import cross_lingual_figures, cross_lingual_rows

    items = [i for i in yaml.safe_load(DATA.read_text("utf-8"))["items"] if i["split"] == "test"]
    matcher = real_pipeline.cross_lingual_matcher
    assert matcher.model is not None
    x, right = cross_lingual_rows(matcher, items)
    figures = cross_lingual_figures(matcher.model, x, right, sum(1 for i in items if i["cards"]))
    assert figures["precision"] >= 0.80
    assert figures["answerable_served_right"] >= 0.50
