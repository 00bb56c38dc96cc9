"""The one place an Answer (statements, citations, resources) becomes text: the API's `answer` field, the
CLI, and the OpenAI-compatible message. The widget renders the same data itself, as a list with links."""

from __future__ import annotations

from collections.abc import Iterable

from bpd_rag.textutil import safe_url
from bpd_rag.types import EVIDENCE_LABELS, Answer, Citation, Resource, Statement, source_display, source_type_label

SOURCES_HEADING = "Sources:"


def markers(ids: Iterable[int]) -> str:
    """Citation markers as the text shows them: "[1] [3]"."""
    return " ".join(f"[{n}]" for n in ids)


def source_name(citation: Citation) -> str:
    """How a source is named beside a quote: its publisher (or title) and the kind of source."""
    return source_display(citation.publisher, citation.title, citation.doc_id, citation.source_type)


def source_label(citation: Citation) -> str:
    """The source beside a quote, with the kind of evidence first: "Small randomized trial — PIP (clinic blog)"."""
    evidence = EVIDENCE_LABELS.get(citation.evidence or "", "")
    name = source_name(citation)
    return f"{evidence[:1].upper()}{evidence[1:]} — {name}" if evidence else name


def _with_markers(text: str, ids: list[int]) -> str:
    return f"{text} {markers(ids)}" if ids else text


def statement_text(statement: Statement, citations: dict[int, Citation]) -> str:
    """One statement as a line of text."""
    if statement.kind == "quote":
        cited = [citations[n] for n in statement.citation_ids if n in citations]
        prefix = f"{source_label(cited[0])}: " if cited else ""
        return f"- {prefix}{_with_markers(statement.text, statement.citation_ids)}"
    if statement.kind == "conflict":
        return f"Note: {_with_markers(statement.text, statement.citation_ids)}"
    if statement.kind == "plain" and not statement.lead:
        return f"- {_with_markers(statement.text, statement.citation_ids)}"
    return _with_markers(statement.text, statement.citation_ids)


def resource_lines(resources: Iterable[Resource]) -> list[str]:
    """The resources as "- " lines."""
    return [f"- {r.text}" for r in resources]


def answer_text(answer: Answer) -> str:
    """The reply as plain text with [n] markers: the API's `answer` field and the start of every other channel.

    Lead sentences make one paragraph; quotes and supporting points are "- " lines; the resources are
    listed right after the statement that introduces them.
    """
    citations = {c.id: c for c in answer.citations}
    lines: list[str] = []
    lead: list[str] = []

    def flush_lead() -> None:
        if lead:
            lines.append(" ".join(lead))
            lead.clear()

    previous: Statement | None = None
    for statement in answer.statements:
        if statement.lead and statement.kind == "plain":
            lead.append(statement_text(statement, citations))
            previous = statement
            continue
        flush_lead()
        if statement.kind == "conflict" and previous is not None and previous.kind == "conflict" and lines:
            # the sentences of one disagreement stay on one "Note:" line
            lines[-1] += " " + _with_markers(statement.text, statement.citation_ids)
        else:
            lines.append(statement_text(statement, citations))
        previous = statement
        if statement.resources:
            lines.extend(resource_lines(answer.resources))
    flush_lead()
    return "\n".join(lines).strip()


def sources_block(citations: Iterable[Citation]) -> str:
    """ "Sources:" and one line per citation: [n] title — source type — “quote” (link)."""
    lines = [SOURCES_HEADING]
    for c in citations:
        url = safe_url(c.url)
        link = f" ({url})" if url else ""
        lines.append(f"[{c.id}] {c.title} — {source_type_label(c.source_type)} — “{c.quote}”{link}")
    return "\n".join(lines)


def _resources_line(answer: Answer, text: str) -> str | None:
    """One compact line with the resources the text does not list yet (a footer line names only some)."""
    missing = [r.text for r in answer.resources if f"- {r.text}" not in text]
    return " · ".join(missing) if missing else None


def openai_text(answer: Answer) -> str:
    """The OpenAI-compatible message: the answer, notice, disclaimer, every crisis resource, the sources."""
    text = answer_text(answer)
    parts = [text]
    if answer.notice:
        parts.append(answer.notice)
    if answer.disclaimer:
        parts.append(answer.disclaimer)
    resources = _resources_line(answer, text)
    if resources:
        parts.append(resources)
    if answer.citations:
        parts.append(sources_block(answer.citations))
    return "\n\n".join(parts)


def cli_text(answer: Answer) -> str:
    """What `bpd-rag ask` prints: the answer, notice, the sources by title and kind, disclaimer, resources."""
    text = answer_text(answer)
    parts = [text]
    if answer.notice:
        parts.append(answer.notice)
    if answer.citations:
        lines = ["Sources"]
        for c in answer.citations:
            url = safe_url(c.url)
            link = f" {url}" if url else ""
            lines.append(f" [{c.id}] {source_name(c)}: {c.title}{link}")
            lines.append(f"     “{c.quote}”")
        parts.append("\n".join(lines))
    if answer.disclaimer:
        parts.append(answer.disclaimer)
    resources = _resources_line(answer, text)
    if resources:
        parts.append(resources)
    return "\n\n".join(parts)


def without_sources(text: str) -> str:
    """An earlier reply of the OpenAI-compatible API without the Sources block it ended with."""
    return text.split(f"\n\n{SOURCES_HEADING}\n", 1)[0]
