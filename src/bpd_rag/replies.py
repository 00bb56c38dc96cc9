"""Replies the pipeline composes from safety decisions: the crisis reply, refusals, the concern check-in and
the resources footer, and answers with citations removed. Every text comes from prompts/."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from bpd_rag.errors import ConfigurationError
from bpd_rag.prompts import CrisisLanguage, CrisisTexts, load_crisis_texts, load_prompt, load_yaml
from bpd_rag.types import Answer, AnswerKind, Resource, SafetyDecision, Statement

# Small talk is short: a longer message has a question in it, even if it starts with "hi".
_SMALLTALK_WORDS = 8
# A greeting, thanks or goodbye that carries a risk signal gets the greeting check-in only when this short
# ("good morning", "ok thanks. bye"); a longer one gets the distress reply. On the risk data set's dev split,
# the crisis messages read as small talk without the crisis reply are farewells of 7 words and more ("dear
# whoever reads these logs, i tried. bye"), and the greetings and goodbyes without risk mostly 1 to 5 words.
_GREETING_WORDS = 5
# An amount of a drug ("0.5 mg/kg", "40 mg", "2 ml"): a refusal of personal advice never carries one,
# and neither does any reply to a crisis.
DOSE = re.compile(r"\d[\d.,]*\s*(?:mg|milligrams?|mcg|micrograms?|µg|ml|millilit(?:er|re)s?|g)\b(?:\s*/\s*kg)?", re.I)


def renumbered(answer: Answer, drop: Collection[int]) -> Answer:
    """The answer without the given citations and the statements resting on them, citations numbered 1..m."""
    if not drop:
        return answer
    kept_citations = [c for c in answer.citations if c.id not in drop]
    new_id = {c.id: n for n, c in enumerate(kept_citations, start=1)}
    statements = []
    for s in answer.statements:
        if set(s.citation_ids) & set(drop) and s.kind in ("quote", "plain", "conflict"):
            continue
        statements.append(s.model_copy(update={"citation_ids": [new_id[n] for n in s.citation_ids if n in new_id]}))
    citations = [c.model_copy(update={"id": new_id[c.id]}) for c in kept_citations]
    return answer.model_copy(update={"statements": statements, "citations": citations})


def without_doses(answer: Answer) -> Answer:
    """The answer without any statement or quote that states an amount of a drug."""
    dosed = {c.id for c in answer.citations if DOSE.search(c.quote)}
    dosed |= {n for s in answer.statements if DOSE.search(s.text) for n in s.citation_ids}
    out = renumbered(answer, dosed)
    return out.model_copy(update={"statements": [s for s in out.statements if not DOSE.search(s.text)]})


def without_advertising(answer: Answer) -> Answer:
    """The answer without a clinic's advertising of its own services and the statements resting on it (its
    citations must carry their kind of evidence)."""
    return renumbered(answer, {c.id for c in answer.citations if c.evidence == "advertising"})


class Replies:
    """The bot's own replies, from the prompts folder and the locale's crisis file."""

    name = "safety"

    def __init__(self, prompts_dir: Path, locale: str) -> None:
        self.crisis_texts: CrisisTexts = load_crisis_texts(Path(prompts_dir), locale)
        self.refusal_advice = load_prompt(prompts_dir, "refusal_advice.txt")
        self.refusal_general = load_prompt(prompts_dir, "refusal_general.txt")
        self.refusal_injection = load_prompt(prompts_dir, "refusal_injection.txt")
        self.disclaimer = load_prompt(prompts_dir, "disclaimer.txt")
        self.no_answer_text = load_prompt(prompts_dir, "no_answer.txt")
        smalltalk = load_yaml(prompts_dir, "smalltalk.yaml")
        self.smalltalk_default = str(smalltalk.get("default", ""))
        self.statement_text = str(smalltalk.get("statement", "")) or self.smalltalk_default
        try:
            self.smalltalk_kinds = [
                (re.compile(str(k["match"])), str(k["reply"])) for k in smalltalk.get("kinds") or []
            ]
        except (re.error, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"smalltalk.yaml: each kind needs a valid match regex and a reply ({exc})"
            ) from exc

    def texts(self, language: str) -> CrisisLanguage:
        """The crisis texts in the message's language (English when there are none in it)."""
        return self.crisis_texts.language(language)

    def _reply_language(self, language: str) -> str:
        """The language a reply of ours is written in: the message's when the locale file has it, else English."""
        return language if language in self.crisis_texts.languages else "en"

    def _language_note(self, language: str) -> list[Statement]:
        note = self.crisis_texts.other_languages.get(language)
        if language in self.crisis_texts.languages or not note:
            return []
        return [Statement(kind="safety", text=note)]

    def crisis(self, decision: SafetyDecision) -> Answer:
        """The crisis reply: warm, short, the resources (Poison Control and 911 first for an overdose), no content."""
        texts = self.texts(decision.language)
        overdose = decision.category == "overdose"
        resources: list[Resource] = [*texts.poison, *texts.resources] if overdose else list(texts.resources)
        resources = list({(r.label, r.text): r for r in resources}.values())  # 911 once
        statements = self._language_note(decision.language)
        if decision.category == "method":
            statements.append(Statement(kind="safety", text=texts.lethal_means))
        opening = texts.overdose_message if overdose else texts.message
        statements += [
            Statement(kind="safety", text=opening, resources=True),
            Statement(kind="safety", text=texts.closing),
        ]
        return Answer(
            kind="crisis",
            statements=statements,
            resources=resources,
            risk="crisis",
            answerer=self.name,
            language=self._reply_language(decision.language),
        )

    def injection(self) -> Answer:
        """The refusal of a role-play or instruction-override attempt (nothing retrieved)."""
        return Answer(
            kind="refusal", statements=[Statement(kind="safety", text=self.refusal_injection)], answerer=self.name
        )

    def advice_refusal(self, general: Answer | None, language: str = "en") -> Answer:
        """The kind refusal of personal advice, with what the sources say in general (never an amount of a drug);
        in the message's language when the locale's file has the texts (the sources' words stay in English)."""
        texts = self.texts(language)  # English has no refusal of its own there: the prompt files say it
        localized = bool(texts.refusal_advice)
        introduction = texts.refusal_general if localized and texts.refusal_general else self.refusal_general
        statements = [Statement(kind="safety", text=texts.refusal_advice or self.refusal_advice)]
        answer = Answer(
            kind="refusal",
            statements=statements,
            disclaimer=self.disclaimer,
            answerer=self.name,
            language=language if localized else "en",
        )
        # A reviewed card that says the sources do not answer the general question still says what they do say
        # near it ("The sources do not say who should get ketamine for BPD", "talk with a qualified provider").
        if general is None or general.kind not in ("answer", "no_answer"):
            return answer
        if general.kind == "no_answer" and not general.answerer.startswith("card:"):
            return answer
        general = without_advertising(without_doses(general))
        sourced = ("quote", "plain", "conflict")
        if not any(s.kind in sourced for s in general.statements):
            return answer
        kinds = (*sourced, "info") if general.kind == "no_answer" else sourced  # a card's "not in the sources"
        content = [s for s in general.statements if s.kind in kinds]
        return answer.model_copy(
            update={
                "statements": [*statements, Statement(kind="info", text=introduction), *content],
                "citations": general.citations,
            }
        )

    def smalltalk(self, message: str, read_as_smalltalk: bool) -> Answer | None:
        """A short friendly reply to a greeting, thanks, goodbye or "who are you" (None for anything else).

        A message is small talk when it is short and a reviewed pattern or the risk model's intent head says so.
        """
        plain = " ".join(re.sub(r"[^\w\s']", " ", message.lower()).split())
        if not plain and not read_as_smalltalk:
            return None
        if len(plain.split()) > _SMALLTALK_WORDS:
            return None
        reply = next((text for regex, text in self.smalltalk_kinds if regex.search(plain)), None)
        if reply is None and not read_as_smalltalk:
            return None
        text = reply or self.smalltalk_default
        return Answer(kind="smalltalk", statements=[Statement(kind="info", text=text)], answerer=self.name)

    def statement(self) -> Answer:
        """The reply to a message that only tells of a diagnosis ("my son was just diagnosed with bpd")."""
        return Answer(
            kind="smalltalk", statements=[Statement(kind="info", text=self.statement_text)], answerer=self.name
        )

    def no_answer(self, answerer: str) -> Answer:
        """Nothing in the sources answers the question."""
        return Answer(
            kind="no_answer", statements=[Statement(kind="info", text=self.no_answer_text)], answerer=answerer
        )

    def in_language(self, answer: Answer, language: str) -> Answer:
        """A "nothing found" reply in the message's language when the locale's file has one (else as it is)."""
        text = self.crisis_texts.languages[language].no_answer if language in self.crisis_texts.languages else ""
        if not text:
            return answer
        return answer.model_copy(update={"statements": [Statement(kind="info", text=text)], "language": language})

    def in_english(self, answer: Answer, language: str) -> Answer:
        """An answer in English to a question in another language, with a note in that language that says so
        (when the locale's file has one)."""
        texts = self.crisis_texts.languages.get(language)
        if texts is None or not texts.english_answer:
            return answer
        note = Statement(kind="info", text=texts.english_answer)
        return answer.model_copy(update={"statements": [note, *answer.statements]})

    def with_concern(self, answer: Answer, decision: SafetyDecision) -> Answer:
        """The reply with a short, warm check-in and the resources first (a message with a risk signal).

        Nothing found for a message that reads as distress or crisis: the warm distress reply alone, never "could
        not find an answer" (distress is often asked as a question). A question the model reads as most likely
        without risk ("what's the weather in Paris tomorrow") keeps its "nothing found" reply after the check-in.
        A reply in this tier never states an amount of a drug, even to a message read as most likely without risk
        (on dev, 6 of 58 crisis messages at this tier were read that way, one an overdose that had happened).
        """
        if answer.kind == "no_answer" and decision.troubled:
            return self.support(decision)
        answer = without_doses(answer)
        if answer.kind == "answer" and not answer.citations:  # every statement stated a dose
            return self.support(decision)
        texts = self.texts(decision.language)
        check_in = Statement(kind="safety", text=texts.check_in, resources=True)
        statements = [*self._language_note(decision.language), check_in, *answer.statements]
        return answer.model_copy(
            update={"statements": statements, "resources": list(texts.resources), "risk": "concern"}
        )

    def greeting_check_in(self, message: str, decision: SafetyDecision) -> Answer | None:
        """For a short greeting, thanks or goodbye with a risk signal ("good morning", "ok thanks. bye"): what the
        bot is for and the resources, without the distress reply's "that sounds really hard". None for anything
        else (longer small talk, where a farewell may be meant, gets the distress reply), except a longer thanks
        and goodbye the safety layer recognised as an ordinary sign-off ("thanks so much, this was really
        helpful! bye")."""
        texts = self.texts(decision.language)
        plain = re.sub(r"[^\w\s']", " ", message.lower()).split()
        short = 0 < len(plain) <= _GREETING_WORDS or decision.sign_off
        if not decision.smalltalk or not texts.greeting_check_in or not short:
            return None
        return self._resources_reply("smalltalk", texts.greeting_check_in, decision)

    def support(self, decision: SafetyDecision) -> Answer:
        """The warm reply to distress with nothing to answer: validates, points to the clinician, the resources."""
        return self._resources_reply("support", self.texts(decision.language).distress, decision)

    def _resources_reply(self, kind: AnswerKind, text: str, decision: SafetyDecision) -> Answer:
        """A reply of the bot's own words followed by the resources (the concern tier)."""
        return Answer(
            kind=kind,
            statements=[*self._language_note(decision.language), Statement(kind="safety", text=text, resources=True)],
            resources=list(self.texts(decision.language).resources),
            risk="concern",
            answerer=self.name,
            language=self._reply_language(decision.language),
        )

    def with_footer(self, answer: Answer, language: str) -> Answer:
        """The reply with one line offering the resources (an answer about suicidality or self-harm)."""
        if answer.resources:
            return answer
        texts = self.texts(language)
        statements = [*answer.statements, Statement(kind="safety", text=texts.footer)]
        return answer.model_copy(update={"statements": statements, "resources": list(texts.resources)})
