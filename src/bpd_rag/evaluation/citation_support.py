"""Citation support in the ALCE sense (Gao et al. 2023, "Enabling Large Language Models to Generate Text
with Citations"): citation recall and precision of one answer, with a pluggable support scorer.

- A statement is *supported* when the concatenation of the passages it cites supports it; a statement
  with no citation is unsupported. Citation recall = supported statements / statements.
- A citation is *relevant* when its statement is supported and the citation either supports it on its
  own or is needed (the other citations do not suffice). Citation precision = relevant citations / citations.

The statements are the answer's quoted and plain-language sentences, with the citation ids they rest
on (Answer.statements: no text is parsed). The evidence of a citation is its quote: the verbatim
passage the reader is shown (the same in every mode, including a server evaluated over HTTP). Notes that
the sources disagree are judged by the conflict rules and the conflict gold items, not here: they name
sources rather than make a claim a passage could support.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bpd_rag.evaluation.metrics import claims
from bpd_rag.support import SupportScorer
from bpd_rag.types import Answer


@dataclass
class SupportResult:
    """Citation recall and precision counts of one answer, and the statements that failed."""

    statements: int = 0
    supported: int = 0
    citations: int = 0
    relevant: int = 0
    unsupported: list[str] = field(default_factory=list)
    irrelevant: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.supported / self.statements if self.statements else None

    @property
    def precision(self) -> float | None:
        return self.relevant / self.citations if self.citations else None


def citation_support(answer: Answer, scorer: SupportScorer, threshold: float) -> SupportResult:
    """ALCE citation recall and precision of the answer under the scorer (support >= threshold counts)."""
    result = SupportResult()
    quotes = {c.id: c.quote for c in answer.citations}

    memo: dict[tuple[str, str], bool] = {}  # an LLM judge is slow: each (claim, evidence) is asked once

    def supports(claim: str, ids: list[int]) -> bool:
        evidence = " ".join(quotes[n] for n in ids if n in quotes)
        if not evidence:
            return False
        if (claim, evidence) not in memo:
            memo[claim, evidence] = scorer.support(claim, evidence) >= threshold
        return memo[claim, evidence]

    for statement in claims(answer):
        claim = statement.text
        ids = [n for n in statement.citation_ids if n in quotes]
        result.statements += 1
        all_support = supports(claim, ids)
        if all_support:
            result.supported += 1
        else:
            result.unsupported.append(claim)
        for n in statement.citation_ids:
            result.citations += 1
            # As in ALCE's scorer: no citation of an unsupported statement counts; of a supported one, a
            # citation is irrelevant when it fails alone while the others still support the statement.
            others = [m for m in ids if m != n]
            relevant = all_support and (
                (n in quotes and supports(claim, [n])) or not (others and supports(claim, others))
            )
            if relevant:
                result.relevant += 1
            else:
                result.irrelevant.append(f"[{n}] for: {claim}")
    return result
