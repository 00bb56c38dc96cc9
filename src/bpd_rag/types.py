"""The data that flows through the pipeline and out of it (the Answer contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from bpd_rag.textutil import safe_url

SourceType = str  # e.g. "clinic_blog", "news", "trial_summary"; free text so a clinic can add its own

SOURCE_TYPE_LABELS: dict[str, str] = {
    "clinic_blog": "clinic blog",
    "news": "news article",
    "trial_summary": "trial summary",
    "trial_report": "trial report",
    "patient_leaflet": "patient leaflet",
    "unknown": "document",
}


def source_type_label(source_type: str) -> str:
    """Readable name of a source type ("clinic_blog" -> "clinic blog")."""
    return SOURCE_TYPE_LABELS.get(source_type, source_type.replace("_", " "))


# Kinds of evidence, strongest first (an answer leads with the strongest), and how readers are told which is which.
EVIDENCE_RANK: dict[str, int] = {
    "randomized_trial": 0,
    "uncontrolled_study": 1,
    "news": 2,
    "clinic_claim": 3,
    "unknown": 4,
    "advertising": 9,  # a clinic advertising its own services: never presented as information
}
EVIDENCE_LABELS: dict[str, str] = {
    "randomized_trial": "small randomized trial",
    "uncontrolled_study": "uncontrolled study",
    "news": "news report",
    "clinic_claim": "clinic's claim",
    "unknown": "",
    "advertising": "advertising",
}


class EvidenceSpan(BaseModel):
    """A part of a document marked as one kind of evidence (offsets into the document text)."""

    kind: str
    start: int
    end: int


def source_display(publisher: str | None, title: str, doc_id: str, source_type: str) -> str:
    """How a source is named to readers: its publisher (or title) and the kind of source."""
    return f"{publisher or title or doc_id} ({source_type_label(source_type)})"


class Document(BaseModel):
    """One corpus document: front matter plus the cleaned body text that chunk offsets point into."""

    doc_id: str
    title: str
    text: str
    source_type: SourceType = "unknown"
    publisher: str | None = None
    author: str | None = None
    published: str | None = None
    url: str | None = None
    path: str | None = None
    content_hash: str = ""
    evidence: str = Field(default="unknown", description="The kind of evidence of text outside marked spans.")
    evidence_spans: list[EvidenceSpan] = Field(default_factory=list)

    def evidence_at(self, offset: int | None) -> str:
        """The kind of evidence of the text at an offset."""
        if offset is not None:
            for span in self.evidence_spans:
                if span.start <= offset < span.end:
                    return span.kind
        return self.evidence


class Chunk(BaseModel):
    """A span of a document: ``text == document.text[start:end]``."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    heading: str | None = None
    title: str = ""
    source_type: SourceType = "unknown"
    url: str | None = None
    publisher: str | None = None
    doc_hash: str = ""


class Passage(BaseModel):
    """A retrieved chunk with the scores that ranked it."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    dense_similarity: float | None = None
    neighbour_of: str | None = Field(default=None, description="Set when added as the chunk after a retrieved one.")


class Citation(BaseModel):
    """A verbatim passage of a corpus document that statements of an answer rest on."""

    id: int
    doc_id: str
    chunk_id: str
    title: str
    source_type: SourceType
    publisher: str | None = Field(default=None, description="Who published the source, when it says.")
    url: str | None = Field(default=None, description="The source's web page (http or https only).")
    quote: str = Field(description="Verbatim text of the cited document.")
    start: int | None = Field(default=None, description="Offset of the quote in the document text.")
    evidence: str | None = Field(
        default=None,
        description="What kind of evidence the quote is: randomized_trial, uncontrolled_study, news, clinic_claim.",
    )

    @field_validator("url")
    @classmethod
    def _only_web_links(cls, url: str | None) -> str | None:
        """A javascript:, data: or other non-web URL from a document's front matter never reaches a reader."""
        return safe_url(url)


StatementKind = Literal["quote", "plain", "conflict", "safety", "info"]


class Statement(BaseModel):
    """One sentence (or a quoted source sentence) of an answer, with the citations it rests on.

    kind: "quote" a source sentence quoted verbatim; "plain" a plain-language sentence written from the cited
    quotes; "conflict" a note that the sources disagree; "safety" a safety message (crisis reply, refusal,
    check-in); "info" the bot's own words about what it can do (introductions, "not in the sources").
    """

    kind: StatementKind
    text: str
    citation_ids: list[int] = Field(default_factory=list)
    lead: bool = Field(default=False, description="Part of the short lead that answers the question directly.")
    resources: bool = Field(default=False, description="The crisis resources are listed right after this statement.")


class Resource(BaseModel):
    """A crisis resource, from prompts/crisis/<locale>.yaml: links are built from these fields only."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="Name of the service, e.g. '988 Suicide & Crisis Lifeline'.")
    text: str = Field(description="The line shown to the reader, e.g. 'Call or text 988 (Suicide & Crisis Lifeline)'.")
    call: str | None = Field(default=None, description="Phone number to call, as dialled (digits, + and spaces).")
    sms: str | None = Field(default=None, description="Number to text.")
    sms_body: str | None = Field(default=None, description="The word to text, e.g. 'HOME'.")
    url: str | None = Field(default=None, description="Web page of the service (https).")


class Conflict(BaseModel):
    summary: str
    citation_ids: list[int]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Question(BaseModel):
    """What an answerer is asked: the user's own words, the conversation, and the query retrieval ran."""

    text: str = Field(description="The user's message as written.")
    history: list[Message] = Field(default_factory=list, description="Earlier turns, oldest first.")
    query: str = Field(description="The standalone, spelling-corrected query retrieval embedded.")


# "support": the warm reply to distress with no question in it (resources shown, no canned "could not find").
AnswerKind = Literal["answer", "no_answer", "crisis", "refusal", "smalltalk", "support"]
RiskTier = Literal["none", "concern", "crisis"]


class Answer(BaseModel):
    """The Answer contract shared by the CLI's --json and the HTTP API: data until a renderer turns it into text."""

    kind: AnswerKind
    statements: list[Statement] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    disclaimer: str = ""
    notice: str | None = Field(
        default=None,
        description="Set when the reply is degraded, e.g. the LLM failed and the extractive answer is shown.",
    )
    answerer: str = Field(default="extractive", description="Which answerer wrote the reply.")
    resources: list[Resource] = Field(default_factory=list, description="Crisis resources shown with this reply.")
    risk: RiskTier = Field(
        default="none",
        description="What the safety check found: 'concern' adds resources, 'crisis' is the crisis reply.",
    )
    language: str = Field(default="en", description="Language of the bot's own words in this reply (ISO 639-1).")

    @computed_field(  # type: ignore[prop-decorator]  # pydantic's documented way; mypy cannot see through it
        description="The whole reply as plain text with [n] markers (for clients that show text only)."
    )
    @property
    def answer(self) -> str:
        from bpd_rag.render import answer_text  # the renderer imports this module

        return answer_text(self)

    @computed_field(  # type: ignore[prop-decorator]  # as above
        description="Disagreements between the sources that the answer names, with their citations."
    )
    @property
    def conflicts(self) -> list[Conflict]:
        return [Conflict(summary=s.text, citation_ids=s.citation_ids) for s in self.statements if s.kind == "conflict"]


DecisionAction = Literal["answer", "crisis", "refuse"]


class SafetyDecision(BaseModel):
    """What the safety layer decided about a message; the pipeline composes the reply from it."""

    action: DecisionAction = Field(default="answer", description="Answer normally, reply to a crisis, or refuse.")
    risk: RiskTier = Field(default="none", description="'concern' adds a check-in and the resources to the reply.")
    category: str = Field(
        default="", description="Why: the crisis kind (e.g. 'overdose'), 'injection', an advice kind."
    )
    reason: str = Field(default="", description="What decided it (a pattern id, a model probability), for logs.")
    language: str = Field(default="en", description="Language of the message (ISO 639-1), for the reply's own words.")
    leaning: str = Field(
        default="",
        description="A language other than English the message may be in when it is read as English because the "
        "identifier is not sure enough (short messages): a question in it may still get a card (ISO 639-1).",
    )
    general_question: str | None = Field(
        default=None, description="Advice refusals: a general question whose cited answer may be added."
    )
    footer: bool = Field(default=False, description="The message is about a risk topic: show the resources' footer.")
    smalltalk: bool = Field(default=False, description="A greeting, thanks or goodbye rather than a question.")
    statement: bool = Field(
        default=False, description="The message only tells of a diagnosis (one's own or someone's) and asks nothing."
    )
    sign_off: bool = Field(
        default=False,
        description="An ordinary thanks or goodbye that the risk model read as a farewell: the concern tier's short "
        "goodbye with the resources, not the crisis reply.",
    )
    turn_risk: float = Field(
        default=0.0, description="The model's crisis score of this message (1.0 is the threshold), kept per turn."
    )
    troubled: bool = Field(
        default=True,
        description="Concern: the message reads as distress or crisis or about means, or the conversation showed "
        "risk before (False: over the concern threshold but most likely without risk, so a question that finds "
        "nothing gets the check-in and 'nothing found' rather than the distress reply).",
    )


class ReplyReview(BaseModel):
    """What the safety layer found in a reply before it is sent."""

    leaks_prompt: bool = Field(default=False, description="The reply repeats the system prompt: replace it.")
    drop_citations: list[int] = Field(default_factory=list, description="Citations quoting instruction-like text.")
    footer: bool = Field(default=False, description="The reply is about a risk topic: show the resources' footer.")
