"""Answer cards: reviewed plain-language answers the clinic controls (corpus/answers/<id>.md).

A card is content, like a corpus document: the question it answers, other phrasings, a short answer at reading
grade 8 or below whose every sentence cites verbatim quotes of the documents, and review dates. Cards are
verified against the documents when they load (ingest fails naming the card and the quote when a source
changed); a card past its review date is not served. See corpus/answers/README.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bpd_rag.corpus import YAML_LOADER
from bpd_rag.errors import CorpusFileError
from bpd_rag.markers import cited_sentences
from bpd_rag.types import Citation, Document, Statement

CARDS_FOLDER = "answers"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n?", re.DOTALL)
_NOTE = re.compile(r"^Note:\s*", re.IGNORECASE)
# "Disagree: ..." (or "- Disagree: ..."): sentences naming a disagreement between the sources, each citing the
# quotes of its side; they become statements of kind "conflict", shown as a disagreement, not as plain text.
_DISAGREE = re.compile(r"^(?:[-*]\s+)?Disagree:\s*", re.IGNORECASE)
_KINDS = ("answer", "no_answer")


@dataclass(frozen=True)
class CardQuote:
    """A quote a card rests on: where it stands in which document."""

    number: int
    doc_id: str
    text: str


@dataclass(frozen=True)
class Card:
    """One reviewed answer."""

    id: str
    question: str
    phrasings: tuple[str, ...]
    statements: tuple[Statement, ...]  # citation ids are the card's own quote numbers
    quotes: Mapping[int, CardQuote]
    reviewed_by: str
    reviewed_on: dt.date
    review_due: dt.date
    kind: str = "answer"  # "no_answer": the card says what the sources do not cover
    path: str = ""

    @property
    def texts(self) -> tuple[str, ...]:
        """What a question is matched against: the card's question and its other phrasings."""
        return (self.question, *self.phrasings)

    def due(self, today: dt.date) -> bool:
        """Past its review date: not served until reviewed again."""
        return today > self.review_due


@dataclass
class CardSet:
    """The cards of a corpus folder that load and check out, and why the others do not."""

    cards: list[Card] = field(default_factory=list)
    errors: list[CorpusFileError] = field(default_factory=list)

    def servable(self, today: dt.date | None = None) -> list[Card]:
        """The cards that may be served today (checked and not past their review date)."""
        today = today or dt.date.today()
        return [c for c in self.cards if not c.due(today)]


def _date(value: Any, key: str, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise CorpusFileError(where, f"{key} must be a date like 2027-06-01, not {value!r}") from exc


def _statements(body: str, where: str) -> list[Statement]:
    """The body as statements: the lead paragraph's sentences, the points, and Note lines (no citations)."""
    statements: list[Statement] = []
    paragraphs = [p for p in re.split(r"\n\s*\n", body.strip()) if p.strip()]
    for number, paragraph in enumerate(paragraphs):
        for line in paragraph.splitlines():
            line = line.strip()
            if not line:
                continue
            if _NOTE.match(line):
                statements.append(Statement(kind="info", text=_NOTE.sub("", line)))
                continue
            if _DISAGREE.match(line):
                text = _DISAGREE.sub("", line)
                sentences = cited_sentences(text)
                if not sentences or any(not sentence.cited for sentence in sentences):
                    raise CorpusFileError(where, f"every sentence of the disagreement {text!r} must cite its quotes")
                statements.extend(
                    Statement(kind="conflict", text=sentence.text, citation_ids=sentence.cited, lead=number == 0)
                    for sentence in sentences
                )
                continue
            point = line.startswith(("- ", "* "))
            for sentence in cited_sentences(line):
                if not sentence.cited:
                    raise CorpusFileError(
                        where, f"the sentence {sentence.text!r} cites no quote; end it with [n], or start a Note: line"
                    )
                statements.append(
                    Statement(
                        kind="plain", text=sentence.text, citation_ids=sentence.cited, lead=number == 0 and not point
                    )
                )
    if not any(s.kind in ("plain", "conflict", "info") for s in statements):
        raise CorpusFileError(where, "the card has no answer below its front matter")
    return statements


def load_card(path: Path, documents: Mapping[str, Document]) -> Card:
    """One card, checked: front matter, quotes verbatim in their documents, every sentence citing a quote."""
    where = str(path)
    raw = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(raw)
    if not match:
        raise CorpusFileError(where, "no front matter (question, phrasings, quotes, review dates) between --- lines")
    try:
        meta = yaml.load(match.group(1), Loader=YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise CorpusFileError(where, f"front matter is not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise CorpusFileError(where, "front matter must be a YAML mapping")
    for key in ("question", "quotes", "reviewed_by", "reviewed_on", "review_due"):
        if not meta.get(key):
            raise CorpusFileError(where, f"front matter has no {key}")
    quotes: dict[int, CardQuote] = {}
    for number, quote in (meta["quotes"] or {}).items():
        if not isinstance(quote, dict) or "doc" not in quote or "text" not in quote:
            raise CorpusFileError(where, f"quote {number} needs doc and text")
        doc_id, text = str(quote["doc"]), str(quote["text"])
        document = documents.get(doc_id)
        if document is None:
            raise CorpusFileError(where, f"quote {number} cites {doc_id!r}, which is not a document of the corpus")
        if text not in document.text:
            raise CorpusFileError(
                where,
                f"quote {number} is not verbatim in {doc_id} (the source changed, or the quote was mistyped): "
                f"{text[:120]!r}",
            )
        quotes[int(number)] = CardQuote(int(number), doc_id, text)
    statements = _statements(raw[match.end() :], where)
    for statement in statements:
        unknown = [n for n in statement.citation_ids if n not in quotes]
        if unknown:
            raise CorpusFileError(where, f"{statement.text[:60]!r} cites {unknown}, which the quotes do not list")
    kind = str(meta.get("kind", "answer"))
    if kind not in _KINDS:
        raise CorpusFileError(where, f"kind must be one of {list(_KINDS)}, not {kind!r}")
    phrasings = meta.get("phrasings") or []
    if not isinstance(phrasings, list):
        raise CorpusFileError(where, "phrasings must be a list")
    return Card(
        id=path.stem,
        question=str(meta["question"]),
        phrasings=tuple(str(p) for p in phrasings),
        statements=tuple(statements),
        quotes=quotes,
        reviewed_by=str(meta["reviewed_by"]),
        reviewed_on=_date(meta["reviewed_on"], "reviewed_on", where),
        review_due=_date(meta["review_due"], "review_due", where),
        kind=kind,
        path=where,
    )


def load_cards(corpus_dir: Path, documents: Sequence[Document]) -> CardSet:
    """Every card of corpus_dir/answers/, checked against the documents; a broken card is an error, not a crash."""
    folder = Path(corpus_dir) / CARDS_FOLDER
    out = CardSet()
    if not folder.is_dir():
        return out
    by_id = {d.doc_id: d for d in documents}
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            out.cards.append(load_card(path, by_id))
        except CorpusFileError as exc:
            out.errors.append(exc)
        except (OSError, UnicodeDecodeError) as exc:
            out.errors.append(CorpusFileError(str(path), f"cannot be read ({exc})"))
    return out


def card_citations(card: Card, documents: Mapping[str, Document]) -> tuple[list[Statement], list[Citation]]:
    """The card's statements with citations numbered 1..m in order of first use, each a verbatim quote."""
    order: list[int] = []
    for statement in card.statements:
        for n in statement.citation_ids:
            if n not in order:
                order.append(n)
    renumber = {old: new for new, old in enumerate(order, start=1)}
    citations = []
    for old in order:
        quote = card.quotes[old]
        document = documents[quote.doc_id]
        citations.append(
            Citation(
                id=renumber[old],
                doc_id=document.doc_id,
                chunk_id=f"{card.id}#quote-{old}",
                title=document.title,
                source_type=document.source_type,
                publisher=document.publisher,
                url=document.url,
                quote=quote.text,
                start=document.text.index(quote.text),
            )
        )
    statements = [s.model_copy(update={"citation_ids": [renumber[n] for n in s.citation_ids]}) for s in card.statements]
    return statements, citations
