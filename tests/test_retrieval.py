"""BM25, fusion and follow-up resolution."""

from __future__ import annotations

from bpd_rag.retrieval import BM25Index, resolve_query
from bpd_rag.types import Message
from tests.conftest import exchange


def test_bm25_prefers_rarer_terms_and_ignores_unknown_ones() -> None:
    docs = [["ketamine", "dose", "infusion"], ["ketamine", "trial"], ["ketamine", "bladder"], []]
    index = BM25Index(docs)
    assert index.top(["bladder", "nonexistent"], 5)[0][0] == 2
    assert index.top(["ketamine", "dose"], 5)[0][0] == 0
    assert index.top(["nothing"], 5) == []


def test_follow_up_borrows_the_previous_question() -> None:
    history = [
        Message(role="user", content="Tell me about the pilot trial of ketamine"),
        Message(role="assistant", content="..."),
    ]
    assert (
        resolve_query("what dose was used for that?", history)
        == "Tell me about the pilot trial of ketamine what dose was used for that?"
    )
    assert resolve_query("What side effects did participants report after ketamine?", history).startswith("What side")
    assert resolve_query("what dose was used for that?", []) == "what dose was used for that?"


def test_follow_up_borrows_the_lead_of_the_answer_it_follows() -> None:
    answered = [
        Message(role="user", content="what is ketamine made of"),
        Message(
            role="assistant",
            content="Here is what the sources say: It is a mixture of two forms, S-ketamine and R-ketamine [1].\n"
            "- Another point [2].",
        ),
    ]
    assert (
        resolve_query("which one is stronger", answered)
        == "what is ketamine made of It is a mixture of two forms, S-ketamine and R-ketamine. which one is stronger"
    )
    # A reply that quotes nothing (no answer, a crisis reply) lends nothing; nor does an answer before the last turn.
    declined = [answered[0], Message(role="assistant", content="I could not find an answer to that. Call 988.")]
    assert resolve_query("which one is stronger", declined) == "what is ketamine made of which one is stronger"
    assert resolve_query("which one?", [*answered, Message(role="user", content="hm")]) == "hm which one?"
    # The bot's own replies put a sentence's markers after its full stop: the lead is still the first sentence.
    served = [
        Message(role="user", content="can u do it at home"),
        Message(role="assistant", content="It is usually given in a clinic. [1] These are drips into a vein. [1] [2]"),
    ]
    lead = "It is usually given in a clinic."
    assert resolve_query("is that safe tho", served) == f"can u do it at home {lead} is that safe tho"
    # The source named before a quote is not part of the lead (a follow-up's query went to the card on that source),
    # and a long clause before a colon is the answer itself.
    sourced = exchange(
        "how many ppl",
        "Here is what the sources say:\n- Clinic's claim — Ketamine for BPD: Pros And Cons of This Medication "
        "(clinic blog): Ketamine is a mixture of two forms. [1]",
    )
    assert (
        resolve_query("and the other article?", sourced)
        == "how many ppl Ketamine is a mixture of two forms. and the other article?"
    )
    early = exchange("does it work", "It is too early to say whether ketamine works for BPD: the trial was small. [1]")
    assert "too early to say whether ketamine works for BPD: the trial" in resolve_query("why", early)


def test_hybrid_retrieval_ranks_the_passage_with_both_signals(hash_pipeline) -> None:  # type: ignore[no-untyped-def]
    hash_pipeline.ingest()
    passages = hash_pipeline.retriever.retrieve("bladder problems incontinence urinating")
    assert passages[0].chunk.doc_id == "ketamine-bpd-pros-cons"
    assert "bladder" in passages[0].chunk.text.lower()
    assert passages[0].bm25_rank == 1
    assert len(passages) == hash_pipeline.settings.retrieval.top_k


def test_speller_fixes_one_edit_typos_of_long_words_only() -> None:
    from collections import Counter

    from bpd_rag.retrieval import Speller

    speller = Speller(Counter({"trial": 5, "ketamine": 9, "most": 3, "effects": 2}))
    assert (
        speller.correct("wat dose of Ketamin in the pilot trail, efects?")
        == "wat dose of ketamine in the pilot trial, effects?"
    )
    assert speller.correct("how much does it cost") == "how much does it cost"  # "cost" is too short to touch
    english = Speller(Counter({"trial": 9, "might": 9}), english=frozenset({"trail", "right", "every"}))
    # Real English words stay what they say: the speller corrects, it never adds words to the query.
    assert english.correct("pilot trail, right?") == "pilot trail, right?"
    assert english.correct("pilot trial, rigth?") == "pilot trial, rigth?"  # "rigth" is one edit from no corpus word


def test_speller_takes_reviewed_shorthand_and_keeps_inflections() -> None:
    from collections import Counter

    from bpd_rag.fitted import packaged
    from bpd_rag.retrieval import Speller, load_shorthand

    shorthand = load_shorthand(packaged("answering", "shorthand.yaml"))
    speller = Speller(
        Counter({"dissociated": 4, "trial": 5, "given": 3}), english=frozenset({"trail"}), shorthand=shorthand
    )
    # Short words and chat shorthand come from the reviewed list; "trail" is never meant in these sources.
    assert speller.correct("wat dose was givn to ppl in the trail") == "what dose was given to people in the trial"
    # A corpus word with an ending added is not a correction of the word without it.
    assert speller.correct("do ppl dissociate") == "do people dissociate"


def test_a_first_message_about_it_asks_about_ketamine() -> None:
    assert resolve_query("is it safe", []) == "is ketamine safe"
    assert resolve_query("how long does it last??", []) == "how long does ketamine last??"
    # It names something the sources are about: "it" is that, not ketamine.
    assert resolve_query("is bpd genetic or is it from trauma", []) == "is bpd genetic or is it from trauma"
    # A follow-up borrows the previous turn instead.
    history = [Message(role="user", content="what is esketamine")]
    assert resolve_query("is it safe", history) == "what is esketamine is it safe"


def test_neighbours_follow_their_passage(hash_pipeline) -> None:  # type: ignore[no-untyped-def]
    hash_pipeline.ingest()
    top = hash_pipeline.retriever.retrieve("bladder problems incontinence", k=1)
    expanded = hash_pipeline.retriever.with_neighbours(top)
    assert len(expanded) == 2
    assert expanded[1].neighbour_of == top[0].chunk.chunk_id
    assert (expanded[1].chunk.doc_id, expanded[1].chunk.index) == (top[0].chunk.doc_id, top[0].chunk.index + 1)


def test_a_follow_up_that_points_at_the_last_reply_without_a_pronoun_borrows_it() -> None:
    """ "the first one you listed" names nothing the sources are about: the previous turn and the reply's lead do."""
    listed = exchange("Which psychotherapies are used for BPD?", "Common types are DBT and CBT. [1]")
    asked = "Has anyone suggested combining ketamine with the first one you listed?"
    assert (
        resolve_query(asked, listed) == f"Which psychotherapies are used for BPD? Common types are DBT and CBT. {asked}"
    )
    assert "DBT" in resolve_query("what did you mention about combining ketamine with therapy", listed)
    # A question with words of its own and nothing pointing back stands alone.
    alone = "Has anyone suggested combining ketamine with psychotherapy?"
    assert resolve_query(alone, listed) == alone
