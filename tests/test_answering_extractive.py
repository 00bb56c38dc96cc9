"""The offline answerer and conflict detection, on the real corpus with the real embedder."""

from __future__ import annotations

import re

import pytest

from bpd_rag.answering.cards import CardMatcher
from bpd_rag.conflicts import Claim, find_disagreements
from bpd_rag.corpus import load_corpus
from bpd_rag.pipeline import Pipeline
from bpd_rag.render import openai_text
from tests.conftest import CORPUS

DOC_TEXT = {d.doc_id: d.text for d in load_corpus(CORPUS).documents}


@pytest.fixture
def extractive(real_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The real pipeline with no answer card served: what the extractive answerer does on its own."""
    no_cards = CardMatcher([], real_pipeline.documents, real_pipeline.embedder, None)
    monkeypatch.setitem(real_pipeline.__dict__, "card_matcher", no_cards)
    return real_pipeline


def assert_grounded(answer) -> None:  # type: ignore[no-untyped-def]
    """Every line after the intro cites a source; every [n] resolves; every quote is verbatim document text."""
    ids = {c.id for c in answer.citations}
    for line in answer.answer.splitlines()[1:]:
        assert re.search(r"\[\d+\]", line), f"uncited line: {line!r}"
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)} <= ids
    for c in answer.citations:
        text = DOC_TEXT[c.doc_id]
        assert c.quote in text
        assert c.start is not None and text[c.start : c.start + len(c.quote)] == c.quote


@pytest.mark.real_model
def test_dose_question_is_answered_from_the_trial_report(extractive: Pipeline) -> None:
    answer = extractive.ask("What dose of ketamine was used in the pilot trial?")
    assert answer.kind == "answer"
    assert re.search(r"0\.5 mg(/| per )kg", answer.answer), answer.answer  # in plain words or as written
    assert any(c.doc_id == "pip-pilot-rct-blog" and "0.5 mg/kg" in c.quote for c in answer.citations)
    assert "clinic blog" in openai_text(answer)  # the kind of source is visible
    assert answer.disclaimer
    assert_grounded(answer)


@pytest.mark.real_model
@pytest.mark.parametrize(
    "question",
    [
        "How much does an infusion cost in Philadelphia?",
        "What's the weather tomorrow?",
        "Does salt cause depression?",
    ],
)
def test_questions_the_sources_do_not_answer(extractive: Pipeline, question: str) -> None:
    answer = extractive.ask(question)
    assert answer.kind == "no_answer", answer.answer
    assert "could not find" in answer.answer
    assert answer.disclaimer == ""


@pytest.mark.xfail(
    strict=True,
    reason="known miss of the extractive answerer alone (the card trial-design answers it in the full "
    "pipeline): the fitted sentence model leans on the passage rank and picks the study-title sentence over the "
    "'22 adults' sentence of a neighbouring chunk",
)
@pytest.mark.real_model
def test_participant_count_conflict_is_shown_with_both_sources(extractive: Pipeline) -> None:
    answer = extractive.ask("How many people took part in the pilot randomized trial of ketamine for BPD?")
    assert answer.kind == "answer"
    assert answer.conflicts, answer.answer
    cited = {n for conflict in answer.conflicts for n in conflict.citation_ids}
    cited_docs = {c.doc_id for c in answer.citations if c.id in cited}
    assert cited_docs == {"expio-pilot-rct-summary", "pip-pilot-rct-blog"}
    assert "20" in answer.answer and "22" in answer.answer
    assert_grounded(answer)


@pytest.mark.real_model
def test_follow_up_uses_the_conversation(extractive: Pipeline) -> None:
    from bpd_rag.types import Message

    history = [
        Message(role="user", content="Tell me about the pilot randomized controlled trial of ketamine in BPD."),
        Message(role="assistant", content="It compared ketamine with a control drug."),
    ]
    answer = extractive.ask("What dose was used for that?", history)
    assert answer.kind == "answer" and re.search(r"0\.5 mg(/| per )kg", answer.answer), answer.answer


def test_disagreement_rules() -> None:
    claims = [
        Claim("The study involved 20 patients with BPD; the other group received a placebo.", "a", "A"),
        Claim("In this study, 22 adults were assigned to ketamine or a control dose of midazolam.", "b", "B"),
        Claim("Ketamine is a Schedule III drug with a moderate potential for abuse.", "c", "C"),
        Claim("It is a controlled substance, which means it has a high potential for abuse.", "c", "C"),
        Claim("In addition, ketamine has a low risk of side effects.", "c", "C"),
        Claim("Side effects reported in the ketamine group included vivid dreams and nausea.", "b", "B"),
    ]
    same = [[1.0] * len(claims) for _ in claims]
    summaries = [d.summary for d in find_disagreements(claims, same)]
    assert any("numbers of participants" in s and "20" in s and "22" in s for s in summaries)
    assert any("comparison groups" in s and "placebo" in s and "midazolam" in s for s in summaries)
    assert any("potential for abuse" in s and "moderate" in s and "high" in s for s in summaries)
    assert any("low risk of side effects" in s for s in summaries)
    # Claims about different studies (low similarity) are not set against each other.
    apart = [[0.1] * len(claims) for _ in claims]
    assert not any("participants" in d.summary for d in find_disagreements(claims, apart))


@pytest.mark.real_model
def test_low_risk_claim_is_set_against_the_listed_side_effects(extractive: Pipeline) -> None:
    answer = extractive.ask("Is ketamine safe? Does it have side effects?")
    assert answer.conflicts and "low risk of side effects" in answer.conflicts[0].summary, answer.answer
    by_id = {c.id: c for c in answer.citations}
    cited = [by_id[i].quote for conflict in answer.conflicts for i in conflict.citation_ids]
    assert any("low risk of side effects" in q for q in cited)
    assert any(re.search(r"side effects .*(include|reported)|can (also )?cause", q) for q in cited)
    assert_grounded(answer)


def test_list_lead_in_is_quoted_with_its_list() -> None:
    from bpd_rag.answering.extractive import _through_list, one_line

    text = "Risks follow. These side effects may include:\n\n- Anxiety\n- Nightmares\n\nNext paragraph."
    start = text.index("These")
    end = _through_list(text, text.index(":") + 1)
    assert text[start:end] == "These side effects may include:\n\n- Anxiety\n- Nightmares"
    assert one_line(text[start:end]) == "These side effects may include: Anxiety; Nightmares"
    assert _through_list(text, text.index("follow.") + 7) == text.index("follow.") + 7


def test_sentence_cache_survives_concurrent_requests(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Threads asking at once while the cache keeps filling up never lose a vector they need."""
    from concurrent.futures import ThreadPoolExecutor

    from bpd_rag.answering import extractive
    from bpd_rag.embeddings import HashEmbedder
    from bpd_rag.prompts import default_prompts_dir

    answerer = extractive.ExtractiveAnswerer(HashEmbedder(), default_prompts_dir())
    original, extractive._CACHE_LIMIT = extractive._CACHE_LIMIT, 20  # the cache is replaced again and again
    try:
        batches = [[f"sentence {i} {j}" for j in range(15)] for i in range(200)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(answerer._embed, batches))
    finally:
        extractive._CACHE_LIMIT = original
    assert all(len(r) == 15 for r in results)
    assert results[3][0] == HashEmbedder().embed_documents(["sentence 3 0"])[0]


@pytest.mark.xfail(
    strict=True,
    reason="known miss of the extractive answerer alone (the card bpd-or-bipolar answers it in the full "
    "pipeline): the fitted sentence model does not pick the definition of BPD",
)
@pytest.mark.real_model
def test_a_known_source_error_is_never_repeated(extractive: Pipeline) -> None:
    """One source calls bipolar disorder "BPD" (corpus/errata.yaml): the bot must not repeat the confusion."""
    answer = extractive.ask("Is BPD the same as bipolar disorder?")
    assert "bipolar disorder (BPD)" not in answer.answer
    assert "borderline personality disorder (bpd)" in answer.answer.lower()
    assert_grounded(answer)
