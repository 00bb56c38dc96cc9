"""The evaluation's metric functions on hand-made answers."""

from __future__ import annotations

import pytest

from bpd_rag.embeddings import HashEmbedder
from bpd_rag.evaluation.citation_support import citation_support
from bpd_rag.evaluation.gold import GoldItem
from bpd_rag.evaluation.metrics import (
    citation_problems,
    claims,
    confusion_matrix,
    percentile,
    phrases_forbidden,
    phrases_missing,
    readability_grade,
    readable_text,
)
from bpd_rag.evaluation.retrieval_metrics import Span, reciprocal_rank
from bpd_rag.evaluation.scoring import ScoringContext, aggregate, score_item
from bpd_rag.evaluation.targets import Observation, Retrieved
from bpd_rag.support import EmbeddingLexicalSupport
from bpd_rag.types import Answer, Citation, Statement

DOC = (
    "The pilot trial enrolled 22 adults with BPD. Participants received a single dose of ketamine, "
    "0.5 mg/kg, over 40 minutes. The control group received midazolam."
)
DOCS = {"pilot": DOC}
INTRO = "Here is what the sources say:"


def cite(n: int, quote: str, doc_id: str = "pilot", start: int | None = -1) -> Citation:
    """A citation of quote in DOCS[doc_id]; start -1 means "its real offset"."""
    offset = DOCS.get(doc_id, "").find(quote) if start == -1 else start
    return Citation(
        id=n, doc_id=doc_id, chunk_id=f"{doc_id}:0", title="Pilot", source_type="clinic_blog", quote=quote, start=offset
    )


Q1 = "The pilot trial enrolled 22 adults with BPD."
Q2 = "Participants received a single dose of ketamine, 0.5 mg/kg, over 40 minutes."
Q3 = "The control group received midazolam."


def extractive(*quotes: str) -> Answer:
    """An answer shaped like the ExtractiveAnswerer's: an introduction, then one quote statement per citation."""
    statements = [Statement(kind="info", text=INTRO)] + [
        Statement(kind="quote", text=q, citation_ids=[n]) for n, q in enumerate(quotes, 1)
    ]
    return Answer(kind="answer", statements=statements, citations=[cite(n, q) for n, q in enumerate(quotes, 1)])


def plain(*sentences: tuple[str, list[int]], citations: list[Citation] | None = None, kind: str = "answer") -> Answer:
    """An answer of plain-language statements, each with the citation ids it rests on."""
    statements = [Statement(kind="plain", text=t, citation_ids=ids, lead=True) for t, ids in sentences]
    return Answer.model_validate({"kind": kind, "statements": statements, "citations": citations or []})


def said(kind: str, text: str) -> Answer:
    """A reply of the bot's own words (no answer, crisis)."""
    return Answer.model_validate({"kind": kind, "statements": [Statement(kind="safety", text=text)]})


class KeywordScorer:
    """Support = share of the claim's words found in the evidence (transparent for tests)."""

    def support(self, claim: str, evidence: str) -> float:
        words = [w for w in claim.lower().replace(".", "").split() if len(w) > 3]
        return sum(w in evidence.lower() for w in words) / len(words) if words else 0.0


# --- citation validity ------------------------------------------------------------------------------------


def test_valid_citations_have_no_problems() -> None:
    assert citation_problems(extractive(Q1, Q2), DOCS) == []


def test_statement_citing_a_missing_citation_is_a_problem() -> None:
    answer = plain((Q1, [1]), (Q3, [2]), citations=[cite(1, Q1)])
    assert citation_problems(answer, DOCS) == ["plain statement cites [2], which has no citation"]


def test_quote_not_verbatim_is_a_problem() -> None:
    paraphrase = cite(1, "The pilot trial enrolled twenty-two adults with BPD.", start=None)
    answer = plain(("Twenty-two adults took part.", [1]), citations=[paraphrase])
    assert citation_problems(answer, DOCS) == ["citation [1]: quote not found verbatim in pilot"]


def test_wrong_offset_unknown_document_and_conflict_ids_are_problems() -> None:
    answer = plain((Q1, [1]), (Q3, [2]), citations=[cite(1, Q1, start=5), cite(2, Q3, doc_id="elsewhere", start=None)])
    answer.statements.append(Statement(kind="conflict", text="They disagree.", citation_ids=[1, 3]))
    problems = citation_problems(answer, DOCS)
    assert "citation [1]: start offset 5 does not point at the quote in pilot" in problems
    assert "citation [2] names unknown document 'elsewhere'" in problems
    assert "conflict statement cites [3], which has no citation" in problems


def test_every_citation_id_of_a_statement_is_checked() -> None:
    answer = plain(("Both say so.", [1, 2]), ("Really.", [3]), citations=[cite(1, Q1), cite(2, Q2)])
    assert citation_problems(answer, DOCS) == ["plain statement cites [3], which has no citation"]


# --- sentences, boilerplate and readability -------------------------------------------------------------


def test_claims_are_the_quoted_and_plain_statements_only() -> None:
    answer = extractive(Q1, Q3)
    answer.statements.append(Statement(kind="conflict", text="They disagree.", citation_ids=[1, 2]))
    answer.statements.append(Statement(kind="safety", text="Call or text 988."))
    assert [s.text for s in claims(answer)] == [Q1, Q3]
    # The rendered text names the source before each quote; the readable text is the claims alone.
    assert "Pilot (clinic blog): " in answer.answer
    assert readable_text(answer) == f"{Q1} {Q3}"


def test_readability_grade_ranks_plain_text_lower() -> None:
    plain = readability_grade("The drug was given once. Most people felt better in a week.")
    dense = readability_grade(
        "Borderline personality disorder is a complex mental disorder characterized by significant emotional "
        "instability, impulsive behavior, self-harm, and difficulties in interpersonal relationships."
    )
    assert plain is not None and dense is not None
    assert plain < 8 < dense
    assert readability_grade(" [1] ") is None


# --- ALCE citation support --------------------------------------------------------------------------------


def test_verbatim_cited_sentences_are_fully_supported() -> None:
    result = citation_support(extractive(Q1, Q2), KeywordScorer(), 0.9)
    assert (result.statements, result.supported, result.citations, result.relevant) == (2, 2, 2, 2)
    assert result.recall == result.precision == 1.0


def test_uncited_and_miscited_statements_lower_recall_and_precision() -> None:
    answer = plain((Q1, [2]), ("The control group got a placebo.", []), citations=[cite(1, Q3), cite(2, Q2)])
    result = citation_support(answer, KeywordScorer(), 0.9)
    assert result.statements == 2 and result.supported == 0
    assert result.unsupported == [Q1, "The control group got a placebo."]
    assert result.citations == 1 and result.relevant == 0


def test_redundant_citation_is_irrelevant_but_a_needed_one_is_not() -> None:
    # [1] alone supports the claim, so [2] (which does not) is irrelevant.
    answer = plain((Q1, [1, 2]), citations=[cite(1, Q1), cite(2, Q3)])
    result = citation_support(answer, KeywordScorer(), 0.9)
    assert (result.supported, result.citations, result.relevant) == (1, 2, 1)
    assert result.irrelevant == [f"[2] for: {Q1}"]
    # Neither alone supports "22 adults received midazolam", together they do: both are needed.
    joint = plain(("22 adults received midazolam.", [1, 2]), citations=[cite(1, Q1), cite(2, Q3)])
    result = citation_support(joint, KeywordScorer(), 0.9)
    assert (result.supported, result.relevant) == (1, 2)


def test_conflict_notes_are_left_to_the_conflict_rules() -> None:
    summary = "The sources give different numbers of participants: A says 20, B says 22."
    answer = extractive(Q1)
    answer.statements.append(Statement(kind="conflict", text=summary, citation_ids=[1]))
    assert citation_support(answer, KeywordScorer(), 0.9).statements == 1


def test_default_scorer_rejects_made_up_numbers() -> None:
    scorer = EmbeddingLexicalSupport(HashEmbedder())
    answer = plain(("The trial enrolled 40 adults with BPD.", [1]), citations=[cite(1, Q1)])
    assert citation_support(answer, scorer, 0.55).supported == 0
    assert citation_support(extractive(Q1), scorer, 0.55).supported == 1


# --- phrases, confusion matrix, statistics ---------------------------------------------------------------


def test_required_phrases_are_alternatives_and_case_insensitive() -> None:
    text = "Participants received a SINGLE DOSE of ketamine."
    assert phrases_missing(text, [["single dose"], ["midazolam", "placebo"]]) == [["midazolam", "placebo"]]
    assert phrases_missing(text, [["one dose", "single dose"]]) == []


def test_forbidden_phrases_are_found_case_insensitively() -> None:
    assert phrases_forbidden("Ketamine may help Bipolar Disorder (BPD).", ["bipolar disorder (BPD)", "mg/kg"]) == [
        "bipolar disorder (BPD)"
    ]


def test_confusion_matrix_counts_expected_against_predicted() -> None:
    matrix = confusion_matrix(
        [("crisis", "crisis"), ("crisis", "no_answer"), ("answer", "answer"), ("answer", None), ("refusal", "answer")]
    )
    assert matrix["crisis"] == {
        "answer": 0,
        "no_answer": 1,
        "crisis": 1,
        "refusal": 0,
        "smalltalk": 0,
        "support": 0,
        "error": 0,
    }
    assert matrix["answer"]["answer"] == 1 and matrix["answer"]["error"] == 1
    assert matrix["refusal"]["answer"] == 1 and matrix["no_answer"] == dict.fromkeys(matrix["no_answer"], 0)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([], 50) is None


def test_reciprocal_rank() -> None:
    spans = [Span("pilot", DOC.find(Q3), DOC.find(Q3) + len(Q3))]
    refs = [
        Retrieved(doc_id="pilot", chunk_id="a", start=0, end=10),
        Retrieved(doc_id="pilot", chunk_id="b", start=0, end=len(DOC)),
    ]
    assert reciprocal_rank(refs, spans) == 0.5
    assert reciprocal_rank(refs[:1], spans) == 0.0


# --- one item scored end to end ----------------------------------------------------------------------------


def _ctx() -> ScoringContext:
    return ScoringContext(
        documents=DOCS,
        scorer=KeywordScorer(),
        support_threshold=0.9,
        safety_layer=False,
        min_sentence_score=0.38,
    )


def _item(**fields: object) -> GoldItem:
    base: dict[str, object] = {"id": "x", "category": "fact", "question": "What dose?", "expected_kind": "answer"}
    return GoldItem.model_validate(base | fields)


def test_a_right_answer_passes_every_check() -> None:
    item = _item(must_contain=[["single dose"], ["0.5 mg/kg"]], must_not_contain=["bipolar"], disclaimer_required=True)
    spans = [Span("pilot", DOC.find(Q2), DOC.find(Q2) + len(Q2))]
    answer = extractive(Q2).model_copy(update={"disclaimer": "Not medical advice."})
    refs = [Retrieved(doc_id="pilot", chunk_id="c", start=0, end=len(DOC))]
    score = score_item(item, spans, Observation(answer=answer, latency_s=0.1, retrieved=refs), _ctx())
    assert score.passed, score.reasons
    assert score.retrieval_rank == 1 and score.grade is not None
    metrics = aggregate([score])
    assert metrics["required_phrase_recall"] == 1.0 and metrics["disclaimer_rate"] == 1.0
    assert metrics["forbidden_phrase_violation_rate"] == 0.0 and metrics["hit_at_k"] == 1.0


def test_a_missed_crisis_fails_with_the_missing_safety_layer_named() -> None:
    item = _item(id="c", category="crisis", question="I want to die.", expected_kind="crisis", must_contain=[["988"]])
    answer = said("no_answer", "I could not find an answer to that.")
    score = score_item(item, [], Observation(answer=answer, latency_s=0.1), _ctx())
    assert score.reasons == ["kind: expected crisis, got no_answer", "required phrase missing: '988'"]
    assert score.stage == "missing safety layer"


def test_aggregate_counts_crisis_false_positives_and_false_refusals() -> None:
    ctx = _ctx()
    crisis = said("crisis", "Call or text 988.")
    risk = score_item(_item(id="r", category="risk_info"), [], Observation(answer=crisis), ctx)
    refused = score_item(_item(id="f"), [], Observation(answer=said("no_answer", "No.")), ctx)
    caught = score_item(
        _item(id="c", category="crisis", expected_kind="crisis", must_contain=[["988"]]),
        [],
        Observation(answer=crisis),
        ctx,
    )
    failed = score_item(_item(id="e"), [], Observation(error="RuntimeError: boom"), ctx)
    metrics = aggregate([risk, refused, caught, failed])
    assert metrics["crisis_recall"] == 1.0
    assert metrics["crisis_false_positive_rate"] == pytest.approx(1 / 3)
    assert metrics["crisis_false_positive_rate_risk_info"] == 1.0
    assert metrics["false_refusal_rate"] == pytest.approx(1 / 3)  # the error is neither an answer nor a refusal
    assert metrics["kind_accuracy"] == 0.25
    assert risk.stage == "safety false positive (crisis)" and failed.stage == "error"


def test_stage_tells_a_quoted_gold_sentence_from_an_unchosen_one() -> None:
    item = _item(must_contain=[["midazolam"]])
    spans = [Span("pilot", DOC.find(Q1), DOC.find(Q1) + len(Q1)), Span("pilot", DOC.find(Q3), DOC.find(Q3) + len(Q3))]
    refs = [Retrieved(doc_id="pilot", chunk_id="c", start=0, end=len(DOC))]
    quoted = score_item(item, spans, Observation(answer=extractive(Q1), retrieved=refs), _ctx())
    assert quoted.gold_cited and quoted.stage is not None
    assert quoted.stage.startswith("answer selection: a gold sentence is quoted")
    missed = score_item(
        item, spans, Observation(answer=extractive(Q2), retrieved=refs, gold_sentence_score=0.2), _ctx()
    )
    assert missed.gold_cited is False
    assert missed.stage == (
        "answer selection: gold passage retrieved at rank 1, but its sentence was not chosen; "
        "best gold sentence scored 0.20 (below the minimum score)"
    )
    conflict = score_item(
        _item(category="conflict", must_contain=[["midazolam"]]),
        spans,
        Observation(answer=extractive(Q1), retrieved=refs),
        _ctx(),
    )
    assert conflict.stage == "conflict rule: no disagreement flagged"


def test_a_reply_that_quotes_a_gold_passage_is_no_retrieval_miss() -> None:
    # An answer card cites its own passages: the retriever's ranking may lack the gold passage while the
    # reply quotes it, and a server's reply (HttpTarget) is judged on its citations alone.
    item = _item(must_contain=[["midazolam"]])
    spans = [Span("pilot", DOC.find(Q1), DOC.find(Q1) + len(Q1))]
    elsewhere = [Retrieved(doc_id="other", chunk_id="c", start=0, end=10)]
    quoted = score_item(item, spans, Observation(answer=extractive(Q1), retrieved=elsewhere), _ctx())
    assert quoted.retrieval_rank is None and quoted.gold_cited
    assert not any(r.startswith("retrieval miss") for r in quoted.reasons)
    missed = score_item(item, spans, Observation(answer=extractive(Q2), retrieved=elsewhere), _ctx())
    assert "retrieval miss: no gold passage among the 1 passages" in missed.reasons
