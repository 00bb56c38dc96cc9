"""Answer cards: checked against their sources when they load, never served past review, served when a question
matches them, and shown with verbatim citations exactly like extracted quotes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bpd_rag.cards import card_citations, load_cards
from bpd_rag.cli import app
from bpd_rag.corpus import load_corpus
from bpd_rag.pipeline import Pipeline
from bpd_rag.support import numbers_unsupported
from bpd_rag.types import Message
from tests.conftest import CORPUS, exchange

runner = CliRunner()


def test_every_shipped_card_checks_out_against_the_corpus() -> None:
    documents = load_corpus(CORPUS).documents
    loaded = load_cards(CORPUS, documents)
    assert loaded.errors == []
    assert len(loaded.cards) >= 40
    by_id = {d.doc_id: d for d in documents}
    for card in loaded.cards:
        statements, citations = card_citations(card, by_id)
        assert [c.id for c in citations] == list(range(1, len(citations) + 1))
        for c in citations:  # verbatim at its offset, like an extracted quote
            assert by_id[c.doc_id].text[c.start : c.start + len(c.quote)] == c.quote
        assert {n for s in statements for n in s.citation_ids} == {c.id for c in citations}


def test_every_number_a_card_states_is_in_the_quotes_it_cites() -> None:
    # The commonest way a paraphrase goes wrong; the reviewer checks the rest of the meaning.
    loaded = load_cards(CORPUS, load_corpus(CORPUS).documents)
    wrong = [
        (card.id, statement.text)
        for card in loaded.cards
        for statement in card.statements
        if statement.citation_ids
        and numbers_unsupported(statement.text, " ".join(card.quotes[n].text for n in statement.citation_ids))
    ]
    assert wrong == []


def _corpus_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


def test_a_card_whose_source_changed_fails_ingest_naming_the_card_and_the_quote(tmp_path: Path) -> None:
    corpus = _corpus_copy(tmp_path)
    source = corpus / "pip-pilot-rct-blog.md"
    source.write_text(source.read_text("utf-8").replace("No serious adverse events were reported.", "None."), "utf-8")
    env = {
        "BPD_RAG_CORPUS_DIR": str(corpus),
        "BPD_RAG_STORE__PATH": str(tmp_path / "index"),
        "BPD_RAG_EMBEDDING__BACKEND": "hash",
    }
    result = runner.invoke(app, ["ingest", "--json"], env=env)
    assert result.exit_code == 2, result.output
    errors = json.loads(result.output)["errors"]
    broken = {Path(e["path"]).name: e["reason"] for e in errors}
    assert "trial-side-effects.md" in broken and "not verbatim in pip-pilot-rct-blog" in broken["trial-side-effects.md"]
    report = runner.invoke(app, ["report", "cards", "--json"], env=env)
    assert any(Path(b["path"]).name == "trial-side-effects.md" for b in json.loads(report.output)["broken"])


def test_a_card_past_its_review_date_is_not_served_and_is_reported(tmp_path: Path) -> None:
    corpus = _corpus_copy(tmp_path)
    card = corpus / "answers" / "addiction.md"
    card.write_text(card.read_text("utf-8").replace("review_due: 2027-06-01", "review_due: 2020-01-01"), "utf-8")
    loaded = load_cards(corpus, load_corpus(corpus).documents)
    assert "addiction" in {c.id for c in loaded.cards}
    assert "addiction" not in {c.id for c in loaded.servable(dt.date(2026, 12, 1))}
    env = {"BPD_RAG_CORPUS_DIR": str(corpus)}
    report = json.loads(runner.invoke(app, ["report", "cards", "--json"], env=env).output)
    assert {r["card"]: r["status"] for r in report["cards"]}["addiction"] == "past review"


def test_a_card_sentence_without_a_citation_does_not_load(tmp_path: Path) -> None:
    corpus = _corpus_copy(tmp_path)
    card = corpus / "answers" / "addiction.md"
    card.write_text(card.read_text("utf-8") + "\nKetamine is never addictive.\n", "utf-8")
    errors = load_cards(corpus, load_corpus(corpus).documents).errors
    assert len(errors) == 1 and "cites no quote" in errors[0].reason


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("question", "card"),
    [("is it addictive tho", "addiction"), ("can ketamine mess up your bladder", "bladder-problems")],
)
def test_a_matching_question_gets_its_reviewed_card(real_pipeline: Pipeline, question: str, card: str) -> None:
    answer = real_pipeline.ask(question)
    assert answer.answerer == f"card:{card}"
    assert answer.kind == "answer" and answer.disclaimer and answer.citations
    assert all(s.citation_ids for s in answer.statements if s.kind == "plain")


@pytest.mark.real_model
def test_the_dose_question_gets_the_trial_dose_card(real_pipeline: Pipeline) -> None:
    answer = real_pipeline.ask("What dose of ketamine was used in the pilot trial?")
    assert answer.answerer == "card:trial-dose" and "0.5 mg per kg" in answer.answer
    assert any("0.5 mg/kg" in c.quote for c in answer.citations)


@pytest.mark.real_model
@pytest.mark.xfail(
    strict=True,
    reason="known miss: for this follow-up the matcher ranks trial-design (the topic of the previous turn) above "
    "trial-dose; the dev split has too few follow-ups to learn it",
)
def test_a_follow_up_gets_the_card_for_what_is_asked_now(real_pipeline: Pipeline) -> None:
    from bpd_rag.types import Message

    history = [
        Message(role="user", content="Tell me about the pilot randomized controlled trial of ketamine in BPD."),
        Message(role="assistant", content="It compared ketamine with a control drug."),
    ]
    assert real_pipeline.ask("What dose was used for that?", history).answerer == "card:trial-dose"


@pytest.mark.real_model
def test_each_cards_own_question_and_phrasings_find_that_card(real_pipeline: Pipeline) -> None:
    """The matcher ranks a card first for the very words it was written for (at least 99% of 587 phrasings)."""
    matcher = real_pipeline.card_matcher
    misses = []
    texts = [(card, text) for card in matcher.cards for text in card.texts]
    for card, text in texts:
        top = matcher.candidates(real_pipeline.question_for(text))[0][0]
        if top.id != card.id:
            misses.append((text, card.id, top.id))
    assert len(misses) <= len(texts) // 100, misses


@pytest.mark.real_model
def test_a_question_asked_in_a_cards_own_words_gets_that_card(real_pipeline: Pipeline) -> None:
    """Served, not only ranked first: "can ketamine help bpd" had the right card on top at a probability under the
    threshold (its neighbours were close), and got the extractive answer."""
    matcher = real_pipeline.card_matcher
    texts = [(card, text) for card in matcher.cards for text in card.texts]
    wrong = []
    for card, text in texts:
        found = matcher.match(real_pipeline.question_for(text))
        if found is None or found.card.id != card.id:
            wrong.append((text, card.id, found.card.id if found else None))
    assert len(wrong) <= len(texts) // 100, wrong
    found = matcher.match(real_pipeline.question_for("can ketamine help bpd"))
    assert found is not None and found.card.id == "does-ketamine-work-for-bpd"


@pytest.mark.real_model
def test_a_greeting_with_a_question_gets_the_answer_not_small_talk(real_pipeline: Pipeline) -> None:
    assert real_pipeline.ask("hey there, what is bpd").answerer == "card:what-is-bpd"
    # The intent model reads "is he a real doctor" like "are you a real person"; the card on who is who answers it.
    assert real_pipeline.ask("rosenblat = who? is he a real doctor").answerer == "card:who-is-who"
    assert real_pipeline.ask("hi").kind == "smalltalk"
    # Its words ("real", "person") are in one card's phrasings ("the 100 person study", "real world"), which got
    # most of the softmax at a cosine of 0.14: no card is served below the matcher's floor.
    assert real_pipeline.ask("are you a real person").kind == "smalltalk"
    # "What can you do" is about the bot, not a question for the sources: what it can help with, not "not found".
    for message in ("what can you do", "hey what can u help with", "what can i ask", "what can u tell me"):
        reply = real_pipeline.ask(message)
        assert reply.kind == "smalltalk" and "what the studies found" in reply.answer, message
    assert real_pipeline.ask("what can you tell me about the side effects").kind == "answer"


@pytest.mark.real_model
def test_a_first_message_is_read_as_its_query_says_it(real_pipeline: Pipeline) -> None:
    """ "does it work" is "does ketamine work" (a card's own phrasing): the message on its own is read that way too,
    not as the bare "does it work", which was closer to a card on how long effects last."""
    question = real_pipeline.question_for("does it work")
    assert question.query == "does ketamine work"
    features = {card.id: f for card, f, _ in real_pipeline.card_matcher.candidates(question)}
    works = features["does-ketamine-work-for-bpd"]
    assert works["closest_message"] == works["closest"]
    assert real_pipeline.ask("does it work").answerer == "card:does-ketamine-work-for-bpd"
    # A follow-up's own words are still read apart from the turns its query borrows.
    history = [Message(role="user", content="what is midazolam"), Message(role="assistant", content="A sedative [1].")]
    follow_up = real_pipeline.question_for("is it safe", history)
    rows = {card.id: f for card, f, _ in real_pipeline.card_matcher.candidates(follow_up)}
    assert rows["is-ketamine-safe"]["closest_message"] != rows["is-ketamine-safe"]["closest"]


@pytest.mark.real_model
def test_a_phrasing_in_shorthand_is_read_as_the_question_is(real_pipeline: Pipeline) -> None:
    """The question's "ppl" is read as "people"; a card phrasing typed with "ppl" was embedded as typed, so its own
    words scored 0.94 and the card was not served."""
    matcher = real_pipeline.card_matcher
    found = matcher.match(real_pipeline.question_for("how much did they give ppl in the trial"))
    assert found is not None and found.card.id == "trial-dose"
    assert found.features["closest"] > 0.99


@pytest.mark.real_model
def test_a_question_after_a_remark_is_matched_on_its_question_sentence(real_pipeline: Pipeline) -> None:
    assert real_pipeline.ask("my aunt swears by it. whats the evidence").answerer == "card:evidence-strength"


@pytest.mark.real_model
def test_the_speller_corrects_toward_the_words_of_card_questions(real_pipeline: Pipeline) -> None:
    # "invented" is in a card's phrasings, not in the documents.
    assert "invented" in real_pipeline.query_for("who invnted ketamine")


@pytest.mark.real_model
def test_a_question_resting_on_a_false_premise_gets_the_card_on_the_premise(real_pipeline: Pipeline) -> None:
    answer = real_pipeline.ask("since ketamine is already fda approved for bpd why is it so hard to get")
    assert answer.answerer == "card:fda-approval" and answer.answer.startswith("No, ketamine is not yet approved")
    assert real_pipeline.ask("ketamine was only invented recently, right?").answerer == "card:ketamine-history"


@pytest.mark.real_model
def test_a_premise_heard_from_someone_is_read_as_the_claim_itself(real_pipeline: Pipeline) -> None:
    """Who said it ("i read online", "i heard on tiktok") is left out of the premise, and a premise may end its own
    sentence before "is that true": the claim is what a card settles."""
    assert real_pipeline.ask("i read online it cures bpd is that true").answerer == "card:is-ketamine-a-cure"
    assert real_pipeline.ask("i heard on tiktok that its super addictive. is that true").answerer == "card:addiction"


@pytest.mark.real_model
def test_a_question_in_a_cards_own_words_gets_that_card_whatever_leans_elsewhere(real_pipeline: Pipeline) -> None:
    """ "whats the evidence for ketamine in bpd" is 0.96 from a reviewed phrasing of the card on how strong the
    evidence is; the matcher's probability leaned to the card on the uncontrolled study's limits."""
    question = real_pipeline.question_for("whats the evidence for ketamine in bpd")
    ranked = real_pipeline.card_matcher.candidates(question)
    assert ranked[0][0].id != "evidence-strength"  # what the probability alone would serve
    assert real_pipeline.ask("whats the evidence for ketamine in bpd").answerer == "card:evidence-strength"


@pytest.mark.real_model
def test_a_follow_up_that_matches_the_card_just_given_gets_the_card_for_its_own_question(
    real_pipeline: Pipeline,
) -> None:
    """ "and how long were people followed after" after the trial's dose card got the dose card again (its query
    borrows the dose sentence); on its own it asks how long the trial followed people. A follow-up whose own words
    match no card keeps the card just given."""
    first = "what dose did the trial use"
    given = real_pipeline.ask(first)
    assert given.answerer == "card:trial-dose"
    history = exchange(first, given.answer)
    follow_up = "and how long were people followed after"
    repeated = real_pipeline.card_matcher.match(real_pipeline.question_for(follow_up, history))
    assert repeated is not None and repeated.card.id == "trial-dose"
    assert real_pipeline.ask(follow_up, history).answerer == "card:trial-follow-up"
    side_effects = real_pipeline.ask("side effects?")
    again = real_pipeline.ask("are they bad", exchange("side effects?", side_effects.answer))
    assert again.answerer == side_effects.answerer
