"""The one citation-marker syntax the project reads: [n] markers in text a model generated and in the answer
cards' source. Everywhere else citations are data (Statement.citation_ids), never parsed back from text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bpd_rag.textutil import split_sentences

# One citation group: [3] or [1, 3]; "[1][3]" is two groups.
MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
# Markers written after the full stop ("... infusion. [2]", "... with BPD.” [2]") would start the next
# sentence when split, so they are moved in front of the stop (and any closing quote or bracket) first.
_MARKERS_AFTER_STOP = re.compile(r"([.!?][\"”’')\]]*)((?:[ \t]*\[\s*\d+(?:\s*,\s*\d+)*\s*\])+)")
# List bullets and numbering ("1. ") at line starts: the splitter would read "1." as a sentence of its own.
_LINE_PREFIX = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)]|#+)[ \t]+", re.MULTILINE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class CitedSentence:
    """A sentence without its markers, and the citation numbers it gave (in order, each once)."""

    text: str
    cited: list[int]


def cited_numbers(text: str) -> list[int]:
    """The citation numbers of the markers in a text, in order of first use."""
    numbers: list[int] = []
    for match in MARKER.finditer(text):
        for part in match.group(1).split(","):
            if int(part) not in numbers:
                numbers.append(int(part))
    return numbers


def strip_markers(text: str) -> str:
    """The text without its [n] markers (and without the space they leave before punctuation)."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"[ \t]+", " ", MARKER.sub(" ", text))).strip()


def cited_sentences(text: str) -> list[CitedSentence]:
    """The sentences of a text with the markers that belong to each (list bullets and numbering dropped)."""
    text = _LINE_PREFIX.sub("", text.replace("\r\n", "\n"))
    text = _MARKERS_AFTER_STOP.sub(lambda m: f"{m.group(2)}{m.group(1)}", text)
    out = []
    for sentence in split_sentences(text):
        claim = strip_markers(sentence)
        if re.search(r"\w", claim):  # a stray marker or punctuation claims nothing
            out.append(CitedSentence(claim, cited_numbers(sentence)))
    return out
