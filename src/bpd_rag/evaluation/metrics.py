"""Answer-level checks against a gold item: citation validity, required and forbidden phrases, the shape of
the reply (kind, disclaimer), readability, and the statistics the report aggregates them with."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bpd_rag.textutil import split_sentences
from bpd_rag.types import SOURCE_TYPE_LABELS, Answer, AnswerKind, source_type_label

KINDS: tuple[AnswerKind, ...] = ("answer", "no_answer", "crisis", "refusal")

# One citation group: [3] or [1, 3]; "[1][3]" is two groups (the same syntax the LLM answerer reads).
MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
# "... infusion. [2]" -> "... infusion [2]." so that sentence splitting keeps a marker with its sentence;
# also after a closing quote or bracket ("... for patients with BPD.” [2]").
_MARKERS_AFTER_STOP = re.compile(r"([.!?][\"”’)]?)((?:[ \t]*\[\s*\d+(?:\s*,\s*\d+)*\s*\])+)")
_BULLET = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+")
_NOTE = re.compile(r"^\s*Note:\s*", re.I)


def cited_ids(text: str) -> list[int]:
    """The citation numbers a text refers to, in order of first use."""
    out: list[int] = []
    for match in MARKER.finditer(text):
        for part in match.group(1).split(","):
            if int(part) not in out:
                out.append(int(part))
    return out


def strip_markers(text: str) -> str:
    """The text without its [n] markers (and without the space left in front of punctuation)."""
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]+", " ", MARKER.sub(" ", text))).strip()


def citation_problems(answer: Answer, documents: Mapping[str, str]) -> list[str]:
    """Why the answer's citations cannot be trusted: markers without a citation, quotes not in their document.

    A quote must occur verbatim in the cited document's text, and when the citation gives a start offset
    the quote must stand exactly there (the contract promises both)."""
    problems: list[str] = []
    ids = {c.id for c in answer.citations}
    for n in cited_ids(answer.answer):
        if n not in ids:
            problems.append(f"marker [{n}] has no citation")
    for conflict in answer.conflicts:
        for n in conflict.citation_ids:
            if n not in ids:
                problems.append(f"conflict cites [{n}], which has no citation")
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
    return "\n".join([answer.answer, *answer.resources])


def phrases_missing(text: str, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The groups of alternatives none of which occurs in the text (case-insensitive substring)."""
    lower = text.lower()
    return [list(group) for group in groups if not any(alt.lower() in lower for alt in group)]


def phrases_forbidden(text: str, phrases: Sequence[str]) -> list[str]:
    """The forbidden phrases that occur in the text (case-insensitive substring)."""
    lower = text.lower()
    return [p for p in phrases if p.lower() in lower]


def _squash(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class Boilerplate:
    """Recognises the texts the bot says on its own (prompts/): they are neither claims nor answer prose."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = [_squash(t) for t in texts if _squash(t)]

    @classmethod
    def from_prompts(cls, prompts_dir: Path) -> Boilerplate:
        """Every .txt under the prompts folder (crisis replies, refusals, intro, no-answer text, ...)."""
        folder = Path(prompts_dir)
        return cls(p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.txt")))

    def __contains__(self, sentence: object) -> bool:
        squashed = _squash(str(sentence))
        return bool(squashed) and any(squashed in text for text in self._texts)


def _source_prefix(labels: Iterable[str]) -> re.Pattern[str]:
    # Extractive lines read "- Publisher or title (clinic blog): sentence [1]"; titles may contain colons,
    # so the prefix is recognised by the source-type label in brackets right before the colon.
    alternatives = "|".join(sorted({re.escape(label) for label in labels}, key=len, reverse=True))
    return re.compile(rf"^.{{1,200}}? \((?:{alternatives})\):\s+")


def answer_sentences(answer: Answer, boilerplate: Boilerplate | None = None) -> list[str]:
    """The sentences of the reply, each keeping its [n] markers, without bullets, source-name prefixes,
    "Note:" labels and the bot's own boilerplate."""
    labels = [*SOURCE_TYPE_LABELS.values(), *(source_type_label(c.source_type) for c in answer.citations)]
    prefix = _source_prefix(labels)
    out: list[str] = []
    for raw_line in answer.answer.splitlines():
        line = _NOTE.sub("", _BULLET.sub("", raw_line))
        line = prefix.sub("", line) if raw_line.lstrip().startswith(("-", "*", "•")) else line
        line = _MARKERS_AFTER_STOP.sub(lambda m: f"{m.group(2)}{m.group(1)}", line)
        for sentence in split_sentences(line):
            claim = strip_markers(sentence)
            if not re.search(r"[A-Za-z0-9]", claim) or (boilerplate is not None and claim in boilerplate):
                continue
            out.append(sentence.strip())
    return out


def readable_text(answer: Answer, boilerplate: Boilerplate | None = None) -> str:
    """The prose a patient reads, for readability scores: no markers, source prefixes or boilerplate."""
    return " ".join(strip_markers(s) for s in answer_sentences(answer, boilerplate))


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
