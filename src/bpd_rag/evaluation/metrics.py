"""Answer-level checks against a gold item: citation validity, required and forbidden phrases, the shape of
the reply (kind, disclaimer), readability, and the statistics the report aggregates them with."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from bpd_rag.types import Answer, AnswerKind, Statement

KINDS: tuple[AnswerKind, ...] = ("answer", "no_answer", "crisis", "refusal", "smalltalk", "support")
# Statements that make a claim a passage could support; the others are the bot's own words (safety
# messages, introductions) or name a disagreement, which the conflict rules and gold items judge.
CLAIM_KINDS = ("quote", "plain")


def citation_problems(answer: Answer, documents: Mapping[str, str]) -> list[str]:
    """Why the answer's citations cannot be trusted: statements citing nothing there, quotes not in their document.

    A quote must occur verbatim in the cited document's text, and when the citation gives a start offset
    the quote must stand exactly there (the contract promises both)."""
    problems: list[str] = []
    ids = {c.id for c in answer.citations}
    for statement in answer.statements:
        for n in statement.citation_ids:
            if n not in ids:
                problems.append(f"{statement.kind} statement cites [{n}], which has no citation")
    for c in answer.citations:
        text = documents.get(c.doc_id)
        if text is None:
            problems.append(f"citation [{c.id}] names unknown document {c.doc_id!r}")
        elif not c.quote.strip():
            problems.append(f"citation [{c.id}] has an empty quote")
        elif c.quote not in text:
            problems.append(f"citation [{c.id}]: quote not found verbatim in {c.doc_id}")
        elif c.start is not None and text[c.start : c.start + len(c.quote)] != c.quote:
            problems.append(f"citation [{c.id}]: start offset {c.start} does not point at the quote in {c.doc_id}")
    return problems


def visible_text(answer: Answer) -> str:
    """What the reader is shown as the bot's own words: the reply and any crisis resources listed with it."""
    return "\n".join([answer.answer, *(r.text for r in answer.resources)])


def phrases_missing(text: str, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The groups of alternatives none of which occurs in the text (case-insensitive substring)."""
    lower = text.lower()
    return [list(group) for group in groups if not any(alt.lower() in lower for alt in group)]


def phrases_forbidden(text: str, phrases: Sequence[str]) -> list[str]:
    """The forbidden phrases that occur in the text (case-insensitive substring)."""
    lower = text.lower()
    return [p for p in phrases if p.lower() in lower]


def claims(answer: Answer) -> list[Statement]:
    """The statements that make claims (quoted or plain-language sentences), in order."""
    return [s for s in answer.statements if s.kind in CLAIM_KINDS and s.text.strip()]


def readable_text(answer: Answer) -> str:
    """The prose a patient reads, for readability scores: the claims, without markers or source names."""
    return " ".join(s.text for s in claims(answer))


def readability_grade(text: str) -> float | None:
    """Flesch-Kincaid grade level of the text (None when it has no words)."""
    if not re.search(r"[A-Za-z]", text):
        return None
    import textstat  # imported here: only the evaluation needs it

    return float(textstat.flesch_kincaid_grade(text))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, like numpy's default; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean; None when there is nothing to average (a metric with no items)."""
    items = list(values)
    return sum(items) / len(items) if items else None


def confusion_matrix(pairs: Iterable[tuple[str, str | None]]) -> dict[str, dict[str, int]]:
    """Counts of (expected kind -> predicted kind); a reply that failed altogether is predicted "error"."""
    columns = [*KINDS, "error"]
    matrix: dict[str, dict[str, int]] = {expected: dict.fromkeys(columns, 0) for expected in KINDS}
    for expected, predicted in pairs:
        row = matrix.setdefault(expected, dict.fromkeys(columns, 0))
        key = predicted if predicted is not None else "error"
        row[key] = row.get(key, 0) + 1
    return matrix
