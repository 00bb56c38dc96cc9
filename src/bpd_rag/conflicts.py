"""Find claims in the evidence that disagree: counts, control conditions, degrees of risk, safety claims."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Nouns that count the people in a study ("20 patients", "22 adults").
_PEOPLE = r"(?:patients|participants|adults|people|subjects|individuals|volunteers|persons)"
_COUNT = re.compile(rf"\b(\d{{1,6}})\s+(?:\w+\s+){{0,2}}?{_PEOPLE}\b", re.IGNORECASE)
# What a trial compares its drug against.
_CONTROLS = ("placebo", "midazolam", "saline", "sham", "waitlist", "usual care", "treatment as usual", "active control")
_CONTROL = re.compile(r"\b(" + "|".join(re.escape(c) for c in _CONTROLS) + r")\b", re.IGNORECASE)
# A graded claim: "<degree> <risk word> of/for <thing>" ("moderate potential for abuse", "low risk of side effects").
_DEGREES = (
    "no",
    "low",
    "little",
    "minimal",
    "mild",
    "moderate",
    "high",
    "significant",
    "serious",
    "severe",
    "substantial",
)
_GRADED = re.compile(
    r"\b("
    + "|".join(_DEGREES)
    + r")\s+(risk|potential|rate|chance|likelihood)\s+(?:of|for)\s+((?:serious\s+)?[a-z]+(?:\s+effects)?)",
    re.IGNORECASE,
)
_LOW = {"no", "low", "little", "minimal", "mild"}
# A sentence that reports harms happening ("side effects ... included vivid dreams", "can cause bladder problems").
_HARMS_LISTED = re.compile(
    r"\b(side effects|adverse events?|risks?)\b[^.]*"
    r"\b(include|included|including|reported|such as|can cause|may include)\b"
    r"|\bcan (?:also )?cause\b|\bcan increase the risk\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Claim:
    """A sentence of evidence, where it comes from, and how similar it is to the others (by index)."""

    text: str
    doc_id: str
    source: str  # readable source name for summaries


@dataclass(frozen=True)
class Disagreement:
    summary: str
    first: int
    second: int


def _counts(text: str) -> set[str]:
    return {m.group(1) for m in _COUNT.finditer(text)}


def _controls(text: str) -> set[str]:
    return {m.group(1).lower() for m in _CONTROL.finditer(text)}


def _graded(text: str) -> dict[str, str]:
    """{"potential for abuse": "moderate"} for each graded claim in the text."""
    out: dict[str, str] = {}
    for match in _GRADED.finditer(text):
        degree, head, thing = (g.lower() for g in match.groups())
        thing = thing.removeprefix("serious ")
        out[f"{head} {'for' if head == 'potential' else 'of'} {thing}"] = degree
    return out


# Facts that two descriptions of the same study must agree on: (kind, extractor, how a summary names it).
_FACTS: tuple[tuple[str, Callable[[str], set[str]], str], ...] = (
    ("count", _counts, "numbers of participants"),
    ("control", _controls, "comparison groups"),
)


def find_disagreements(
    claims: Sequence[Claim], similarity: Sequence[Sequence[float]], same_topic: float = 0.65
) -> list[Disagreement]:
    """Pairs of claims that disagree. ``similarity[i][j]`` (cosine) keeps apart claims about different studies."""
    found: list[Disagreement] = []
    seen: set[tuple[str, int, int]] = set()

    def add(kind: str, i: int, j: int, summary: str) -> None:
        key = (kind, min(i, j), max(i, j))
        if key not in seen:
            seen.add(key)
            found.append(Disagreement(summary, min(i, j), max(i, j)))

    for i in range(len(claims)):
        for j in range(i + 1, len(claims)):
            a, b = claims[i], claims[j]
            about_same = similarity[i][j] >= same_topic
            if a.doc_id != b.doc_id and about_same:
                for kind, extract, what in _FACTS:
                    fa, fb = extract(a.text), extract(b.text)
                    if fa and fb and not fa & fb:
                        add(
                            kind,
                            i,
                            j,
                            f"The sources give different {what}: {a.source} says {', '.join(sorted(fa))}, "
                            f"{b.source} says {', '.join(sorted(fb))}.",
                        )
            ga, gb = _graded(a.text), _graded(b.text)
            for topic in ga.keys() & gb.keys():
                if ga[topic] != gb[topic]:
                    add(
                        "degree",
                        i,
                        j,
                        f"The sources disagree about the {topic}: \u201c{ga[topic]}\u201d in one place, "
                        f"\u201c{gb[topic]}\u201d in another.",
                    )
            for low, other in ((a, b), (b, a)):
                low_claims = {t: d for t, d in _graded(low.text).items() if d in _LOW and "effect" in t}
                if low_claims and _HARMS_LISTED.search(other.text) and not _graded(other.text).keys() & low_claims:
                    topic, degree = next(iter(low_claims.items()))
                    add(
                        "safety",
                        i,
                        j,
                        (
                            f"{low.source} speaks of a \u201c{degree} {topic}\u201d in one place but lists side "
                            "effects or risks in another."
                            if low.source == other.source
                            else f"{low.source} speaks of a \u201c{degree} {topic}\u201d, but {other.source} "
                            "lists side effects or risks."
                        ),
                    )
    return found
