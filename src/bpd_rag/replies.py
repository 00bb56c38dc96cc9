"""Replies the pipeline composes from safety decisions: the crisis reply, refusals, the concern check-in and
the resources footer, and answers with citations removed. Every text comes from prompts/."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from bpd_rag.prompts import CrisisLanguage, CrisisTexts, load_crisis_texts, load_prompt
from bpd_rag.types import Answer, Resource, SafetyDecision, Statement

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

    def texts(self, language: str) -> CrisisLanguage:
        """The crisis texts in the message's language (English when there are none in it)."""
        return self.crisis_texts.language(language)

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
            language=decision.language if decision.language in self.crisis_texts.languages else "en",
        )

    def injection(self) -> Answer:
        """The refusal of a role-play or instruction-override attempt (nothing retrieved)."""
        return Answer(
            kind="refusal", statements=[Statement(kind="safety", text=self.refusal_injection)], answerer=self.name
        )

    def advice_refusal(self, general: Answer | None) -> Answer:
        """The kind refusal of personal advice, with what the sources say in general (never an amount of a drug)."""
        statements = [Statement(kind="safety", text=self.refusal_advice)]
        answer = Answer(kind="refusal", statements=statements, disclaimer=self.disclaimer, answerer=self.name)
        if general is None or general.kind != "answer":
            return answer
        general = without_doses(general)
        content = [s for s in general.statements if s.kind in ("quote", "plain", "conflict")]
        if not content:
            return answer
        return answer.model_copy(
            update={
                "statements": [*statements, Statement(kind="info", text=self.refusal_general), *content],
                "citations": general.citations,
            }
        )

    def no_answer(self, answerer: str) -> Answer:
        """Nothing in the sources answers the question."""
        return Answer(
            kind="no_answer", statements=[Statement(kind="info", text=self.no_answer_text)], answerer=answerer
        )

    def with_concern(self, answer: Answer, decision: SafetyDecision) -> Answer:
        """The reply with a short, warm check-in and the resources first (a message with a risk signal)."""
        texts = self.texts(decision.language)
        check_in = Statement(kind="safety", text=texts.check_in, resources=True)
        statements = [*self._language_note(decision.language), check_in, *answer.statements]
        return answer.model_copy(
            update={"statements": statements, "resources": list(texts.resources), "risk": "concern"}
        )

    def with_footer(self, answer: Answer, language: str) -> Answer:
        """The reply with one line offering the resources (an answer about suicidality or self-harm)."""
        if answer.resources:
            return answer
        texts = self.texts(language)
        statements = [*answer.statements, Statement(kind="safety", text=texts.footer)]
        return answer.model_copy(update={"statements": statements, "resources": list(texts.resources)})
