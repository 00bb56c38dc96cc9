"""SafetyGuard: triage before retrieval (crisis, prompt injection, personal medical advice) and the checks
after answering (crisis resources, prompt leaks); also flags instruction-like text in corpus documents."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import ConfigurationError
from bpd_rag.prompts import load_prompt, template_variables
from bpd_rag.safety.crisis import DEFAULT_FLOOR, DEFAULT_MARGIN, CrisisDetector
from bpd_rag.safety.rules import Rule, compile_regex, default_data_dir, load_rules, read_lines, read_yaml
from bpd_rag.safety.text import Spelling, split_sentences
from bpd_rag.settings import Settings
from bpd_rag.textutil import load_known_words
from bpd_rag.types import Answer, Message, Triage

# Answers a question from the sources; the pipeline passes its own (retrieval + extractive answerer).
Lookup = Callable[[str], Answer]

_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_CACHE_LIMIT = 4096
_SCANNED_SUFFIXES = (".md", ".txt")  # files whose lines are the document's lines, so line numbers match
_LEAK_MIN_CHARS = 40  # a copied line of the system prompt this long is a leak, not a coincidence
_MARKER = re.compile(r"\[(\d+)\]")


def ensure_safe_to_serve(settings: Settings) -> None:
    """Refuse to start a server for patients when safety triage is switched off (unless explicitly in development)."""
    if settings.safety.triage_enabled or settings.safety.allow_unsafe_dev:
        return
    raise ConfigurationError(
        "Safety triage is switched off (BPD_RAG_SAFETY__TRIAGE_ENABLED=false), so crisis messages would get "
        "ordinary answers. Set BPD_RAG_SAFETY__TRIAGE_ENABLED=true to serve patients; for local development "
        "only, BPD_RAG_SAFETY__ALLOW_UNSAFE_DEV=true lets it start without triage."
    )


@dataclass(frozen=True)
class SafetyTexts:
    """Everything the safety layer says, read from prompts/ (reviewed wording, no literals in code)."""

    crisis: str
    resources: tuple[str, ...]
    reminder: str
    refusal_advice: str
    refusal_general: str
    refusal_injection: str
    disclaimer: str
    answer_intro: str
    no_answer: str
    system_lines: tuple[str, ...]

    @classmethod
    def load(cls, prompts_dir: Path, locale: str) -> SafetyTexts:
        """Read and check the safety texts; the crisis file for the locale must list its resources as "- " lines."""
        if not _LOCALE.fullmatch(locale):
            raise ConfigurationError(
                f"Safety locale {locale!r} is not a locale code. Set BPD_RAG_SAFETY__LOCALE to e.g. US."
            )
        crisis_file = Path("crisis") / f"{locale}.txt"
        if not (Path(prompts_dir) / crisis_file).is_file():
            raise ConfigurationError(
                f"No crisis resources for locale {locale!r}: add {Path(prompts_dir) / crisis_file} "
                "or set BPD_RAG_SAFETY__LOCALE to a locale that has one (e.g. US)."
            )
        crisis = load_prompt(prompts_dir, str(crisis_file))
        resources = tuple(line[2:].strip() for line in crisis.splitlines() if line.startswith("- "))
        if not resources:
            raise ConfigurationError(
                f"{Path(prompts_dir) / crisis_file} lists no resources; write each one on a line starting with '- '."
            )
        system = _read_any_prompt(prompts_dir, "answer_system.txt")
        system_lines = tuple(_squash(line) for line in system.splitlines() if len(_squash(line)) >= _LEAK_MIN_CHARS)
        return cls(
            crisis=crisis,
            resources=resources,
            reminder=load_prompt(prompts_dir, "crisis_reminder.txt"),
            refusal_advice=load_prompt(prompts_dir, "refusal_advice.txt"),
            refusal_general=load_prompt(prompts_dir, "refusal_general.txt"),
            refusal_injection=load_prompt(prompts_dir, "refusal_injection.txt"),
            disclaimer=load_prompt(prompts_dir, "disclaimer.txt"),
            answer_intro=load_prompt(prompts_dir, "answer_intro.txt"),
            no_answer=load_prompt(prompts_dir, "no_answer.txt"),
            system_lines=system_lines,
        )


def _read_any_prompt(prompts_dir: Path, name: str) -> str:
    # The system prompt belongs to the LLM answerer and may gain variables; the leak check needs only its text.
    path = Path(prompts_dir) / name
    if not path.is_file():
        return ""
    return load_prompt(prompts_dir, name, frozenset(template_variables(path.read_text(encoding="utf-8"))))


def _squash(text: str) -> str:
    """Lower case with single spaces, and no list numbering: for finding prompt text inside an answer."""
    return " ".join(re.sub(r"^\s*\d+[.)]\s*", "", text).lower().split())


class SafetyGuard:
    """The Guard the pipeline calls: before() answers crises and refusals itself, after() checks replies."""

    name = "safety"

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        data_dir: Path | None = None,
        floor: float = DEFAULT_FLOOR,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.texts = SafetyTexts.load(settings.prompts_dir, settings.safety.locale)
        self.spelling = Spelling.from_data(read_yaml(data_dir / "spelling.yaml"), _known_words())
        crisis_rules, crisis_extra = load_rules(
            data_dir / "crisis_patterns.yaml", frozenset({"any", "personal", "third"})
        )
        fragments = crisis_extra["fragments"]
        missing = {"FIRST", "THIRD", "GENERIC", "NEGATION"} - set(fragments)
        if missing:
            raise ConfigurationError(f"crisis_patterns.yaml: fragments {sorted(missing)} are required")
        self.crisis = CrisisDetector(
            embedder,
            self.spelling,
            crisis_rules,
            fragments,
            read_lines(data_dir / "crisis_exemplars.txt"),
            read_lines(data_dir / "research_exemplars.txt"),
            floor=floor,
            margin=margin,
        )
        self.risk_topics = compile_regex(
            str(crisis_extra.get("risk_topics", r"(?!)")), "crisis_patterns.yaml risk_topics"
        )
        self.facilitation = compile_regex(
            str(crisis_extra.get("facilitation_after_crisis", r"(?!)")),
            "crisis_patterns.yaml facilitation_after_crisis",
        )
        self.advice_rules, advice_extra = load_rules(data_dir / "advice_patterns.yaml")
        self.general_questions: dict[str, str] = {
            str(k): str(v) for k, v in (advice_extra.get("general_questions") or {}).items() if v
        }
        injection_rules, _ = load_rules(data_dir / "injection_patterns.yaml")
        self.message_injection = [r for r in injection_rules if r.where in ("message", "both")]
        self.document_injection = [r for r in injection_rules if r.where in ("document", "both")]
        self._crisis_cache: dict[str, Triage] = {}

    # --- triage --------------------------------------------------------------------------------------

    def triage(self, message: str, history: Sequence[Message] = (), upcoming_query: str | None = None) -> Triage:
        """What to do with a message before retrieval: "crisis", "refusal" (injection or advice) or "ok".

        upcoming_query: the query retrieval will embed when the message is answered; the crisis check embeds
        it in its own model run, so that an answer costs one run of the model, not two.
        """
        crisis = self._assess_crisis(message, () if upcoming_query is None else (upcoming_query,))
        if crisis.kind == "crisis":
            return crisis
        normalised = self.spelling.normalise(message)
        if self.facilitation.search(normalised) and self.had_crisis(history):
            return Triage(kind="crisis", category="crisis_followup", reason="asks for amounts or means after a crisis")
        for rule in self.message_injection:
            if rule.regex.search(message if rule.raw else normalised):
                return Triage(kind="refusal", category="injection", reason=f"pattern {rule.id}")
        for rule in self.advice_rules:
            if rule.regex.search(normalised):
                return Triage(kind="refusal", category=rule.category, reason=f"pattern {rule.id}")
        return Triage(kind="ok")

    def had_crisis(self, history: Sequence[Message]) -> bool:
        """Whether an earlier user turn of the conversation showed crisis."""
        return any(m.role == "user" and self._assess_crisis(m.content).kind == "crisis" for m in history)

    def _assess_crisis(self, message: str, queries: Sequence[str] = ()) -> Triage:
        cached = self._crisis_cache.get(message)
        if cached is None:
            cached = self.crisis.assess(message, queries)
            if len(self._crisis_cache) >= _CACHE_LIMIT:
                self._crisis_cache.clear()
            self._crisis_cache[message] = cached
        return cached

    # --- the Guard protocol ----------------------------------------------------------------------------

    def before(
        self, message: str, history: Sequence[Message], lookup: Lookup, upcoming_query: str | None = None
    ) -> Answer | None:
        """A crisis reply or a refusal, decided before any retrieval; None lets the pipeline answer."""
        triage = self.triage(message, history, upcoming_query)
        if triage.kind == "crisis":
            return self.crisis_reply()
        if triage.kind == "ok":
            return None
        if triage.category == "injection":
            answer = Answer(kind="refusal", answer=self.texts.refusal_injection, answerer=self.name)
        else:
            answer = self._advice_refusal(message, triage, lookup)
        return self._with_reminder(answer) if self.had_crisis(history) else answer

    def after(self, message: str, history: Sequence[Message], answer: Answer) -> Answer:
        """Checks a reply: no system-prompt text, crisis resources kept visible after a crisis or on risk topics."""
        if self._leaks_prompt(answer.answer):
            return Answer(kind="refusal", answer=self.texts.refusal_injection, answerer=self.name)
        answer = self.without_instruction_quotes(answer)
        if self.had_crisis(history):
            return self._with_reminder(answer)
        if answer.kind == "answer" and (
            self.risk_topics.search(self.spelling.normalise(message))
            or self.risk_topics.search(self.spelling.normalise(answer.answer, fuzzy=False))
        ):
            return answer.model_copy(update={"resources": list(self.texts.resources)})
        return answer

    def warm_up(self) -> None:
        """Embed the crisis exemplars now, so that the first message's crisis check does not wait for them."""
        self.crisis.prepare()

    def scan_document(self, document: object) -> list[str]:
        """Warnings naming file and line for instruction-like text in a corpus document (which stays data)."""
        path = str(getattr(document, "path", None) or getattr(document, "doc_id", "document"))
        lines, where = self._document_lines(document, path)
        warnings: list[str] = []
        # Normalised once per line: with idioms and fuzzy matching off, normalising works word by word, so
        # two joined lines normalise to the two normalised lines joined (and ingest stays cheap).
        normalised = [self.spelling.normalise(line, idioms=False, fuzzy=False) for line in lines]
        hits = [self._injection_in(line, norm) for line, norm in zip(lines, normalised, strict=True)]
        for number, line in enumerate(lines, start=1):
            rule = hits[number - 1]
            if rule is None and number < len(lines) and hits[number] is None:
                # An instruction may wrap onto the next line.
                pair = " ".join(n for n in normalised[number - 1 : number + 1] if n)
                rule = self._injection_in(f"{line} {lines[number]}", pair)
            if rule is not None:
                snippet = " ".join(line.split())
                snippet = snippet if len(snippet) <= 90 else snippet[:87] + "..."
                warnings.append(
                    f"{path}:{number}: instruction-like text{where} ({rule.id}); it is indexed as data and never "
                    f'followed, but check the source: "{snippet}"'
                )
        return warnings

    # --- replies -----------------------------------------------------------------------------------

    def crisis_reply(self) -> Answer:
        """The crisis reply: warm, short, the resources, and no retrieved content."""
        return Answer(kind="crisis", answer=self.texts.crisis, resources=list(self.texts.resources), answerer=self.name)

    def _advice_refusal(self, message: str, triage: Triage, lookup: Lookup) -> Answer:
        text = self.texts.refusal_advice
        answer = Answer(kind="refusal", answer=text, disclaimer=self.texts.disclaimer, answerer=self.name)
        question = self.general_questions.get(triage.category)
        if question is None:
            return answer
        general = self.without_instruction_quotes(lookup(question))
        if general.kind != "answer" or not general.citations:
            general = self.without_instruction_quotes(lookup(_question_part(message)))
        if general.kind != "answer" or not general.citations:
            return answer
        lines = general.answer.splitlines()
        if lines and lines[0].strip() == self.texts.answer_intro:
            lines = lines[1:]
        # The refusal itself cites nothing, so the sources' [n] markers and citation ids stay as they are.
        return answer.model_copy(
            update={
                "answer": "\n".join([text, "", self.texts.refusal_general, *lines]),
                "citations": general.citations,
                "conflicts": general.conflicts,
            }
        )

    def without_instruction_quotes(self, answer: Answer) -> Answer:
        """The answer without quotes of instruction-like document text (flagged at ingest), renumbered."""
        flagged = {c.id for c in answer.citations if self._injection_in(c.quote) is not None}
        if answer.kind != "answer" or not flagged:
            return answer
        kept_lines = []
        for line in answer.answer.splitlines():
            # A bullet is one quoted source; other text is judged sentence by sentence.
            units = [line] if line.lstrip().startswith("- ") else _cited_sentences(line)
            units = [u for u in units if not flagged & _markers(u)]
            if units or not line.strip():
                kept_lines.append(" ".join(units))
        kept = [c for c in answer.citations if c.id not in flagged]
        if not kept:
            return Answer(kind="no_answer", answer=self.texts.no_answer, answerer=answer.answerer)
        new_id = {c.id: n for n, c in enumerate(kept, start=1)}

        def renumber(marker: re.Match[str]) -> str:
            old_id = int(marker.group(1))
            return f"[{new_id[old_id]}]" if old_id in new_id else ""

        text = _MARKER.sub(renumber, "\n".join(kept_lines))
        conflicts = [
            c.model_copy(update={"citation_ids": [new_id[i] for i in c.citation_ids]})
            for c in answer.conflicts
            if not flagged & set(c.citation_ids)
        ]
        citations = [c.model_copy(update={"id": new_id[c.id]}) for c in kept]
        return answer.model_copy(update={"answer": text.strip(), "citations": citations, "conflicts": conflicts})

    def _with_reminder(self, answer: Answer) -> Answer:
        block = "\n".join([self.texts.reminder, *(f"- {r}" for r in self.texts.resources)])
        text = answer.answer if block in answer.answer else f"{answer.answer}\n\n{block}"
        return answer.model_copy(update={"answer": text, "resources": list(self.texts.resources)})

    def _leaks_prompt(self, text: str) -> bool:
        squashed = _squash(text)
        return any(line in squashed for line in self.texts.system_lines)

    # --- documents ---------------------------------------------------------------------------------

    def _injection_in(self, line: str, normalised: str | None = None) -> Rule | None:
        if not line.strip():
            return None
        if normalised is None:
            normalised = self.spelling.normalise(line, idioms=False, fuzzy=False)
        for rule in self.document_injection:
            if rule.regex.search(line if rule.raw else normalised):
                return rule
        return None

    @staticmethod
    def _document_lines(document: object, path: str) -> tuple[list[str], str]:
        """The lines to scan: the file's own (so numbers match an editor) or, for HTML/PDF, the extracted text."""
        if path.lower().endswith(_SCANNED_SUFFIXES):
            try:
                return Path(path).read_text(encoding="utf-8").splitlines(), ""
            except (OSError, UnicodeDecodeError):
                pass
        text = str(getattr(document, "text", "") or "")
        return text.splitlines(), " (line of the extracted text)"


def _known_words() -> frozenset[str]:
    # The embedding model's WordPiece vocabulary doubles as a dictionary of real words, shipped offline.
    from bpd_rag.embeddings import default_model_path

    try:
        return load_known_words(default_model_path() / "vocab.txt")
    except ConfigurationError:
        return frozenset()


def _cited_sentences(text: str) -> list[str]:
    """Sentences with the [n] markers that follow them ("Both. [1] [2]" is one sentence, not two)."""
    out: list[str] = []
    for piece in split_sentences(text):
        if out and not _MARKER.sub("", piece).strip():
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out or [text]


def _markers(text: str) -> set[int]:
    return {int(n) for n in _MARKER.findall(text)}


def _question_part(message: str) -> str:
    """The question sentences of a message ("I weigh 70 kg. How much ...?" -> "How much ...?")."""
    questions = [s for s in split_sentences(message) if s.endswith("?")]
    return " ".join(questions) or message
