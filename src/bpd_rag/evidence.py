"""What kind of evidence a passage of a document is: a randomized trial's findings, an uncontrolled study's, a
news report, a clinic's own claim, or a clinic's advertising. Marked in each document's front matter
(`evidence:` with a default and spans between two exact anchors of the text; see docs/corpus.md)."""

from __future__ import annotations

from typing import Any

from bpd_rag.errors import CorpusFileError
from bpd_rag.types import EVIDENCE_RANK, EvidenceSpan


def read_evidence(meta: Any, text: str, where: str) -> tuple[str, list[EvidenceSpan]]:
    """The document's default kind of evidence and its marked spans (offsets into the text)."""
    if meta is None:
        return "unknown", []
    if not isinstance(meta, dict):
        raise CorpusFileError(where, "evidence must be a mapping with default and spans")
    default = str(meta.get("default", "unknown"))
    spans = []
    for n, span in enumerate(meta.get("spans") or [], start=1):
        try:
            kind, first, last = str(span["kind"]), str(span["from"]), str(span["to"])
        except (KeyError, TypeError) as exc:
            raise CorpusFileError(where, f"evidence span {n} needs kind, from and to") from exc
        if kind not in EVIDENCE_RANK:
            raise CorpusFileError(where, f"evidence span {n}: kind must be one of {sorted(EVIDENCE_RANK)}")
        start = text.find(first)
        end = text.find(last, max(start, 0))
        if start < 0 or end < 0:
            missing = first if start < 0 else last
            raise CorpusFileError(where, f"evidence span {n}: {missing[:60]!r} is not in the text (did it change?)")
        spans.append(EvidenceSpan(kind=kind, start=start, end=end + len(last)))
    if default not in EVIDENCE_RANK:
        raise CorpusFileError(where, f"evidence default must be one of {sorted(EVIDENCE_RANK)}")
    return default, spans
