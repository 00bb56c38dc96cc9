"""SafetyGuard: decides what to do with a message before retrieval (crisis, refusal of prompt injection or
personal medical advice, or answer, with the risk tier) and checks replies before they are sent; also
flags instruction-like text in corpus documents. It returns decisions: the pipeline composes the reply."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import ConfigurationError
from bpd_rag.prompts import load_prompt, template_variables
from bpd_rag.safety.crisis import DEFAULT_FLOOR, DEFAULT_MARGIN, CrisisDetector
from bpd_rag.safety.rules import Rule, compile_regex, default_data_dir, load_rules, read_lines, read_yaml
from bpd_rag.safety.text import Spelling
from bpd_rag.settings import Settings
from bpd_rag.textutil import load_known_words
from bpd_rag.types import Answer, Message, ReplyReview, RiskTier, SafetyDecision

_CACHE_LIMIT = 4096
_SCANNED_SUFFIXES = (".md", ".txt")  # files whose lines are the document's lines, so line numbers match
_LEAK_MIN_CHARS = 40  # a copied line of the system prompt this long is a leak, not a coincidence


def ensure_safe_to_serve(settings: Settings) -> None:
    """Refuse to start a server for patients when safety triage is switched off (unless explicitly in development)."""
    if settings.safety.triage_enabled or settings.safety.allow_unsafe_dev:
        return
    raise ConfigurationError(
        "Safety triage is switched off (BPD_RAG_SAFETY__TRIAGE_ENABLED=false), so crisis messages would get "
        "ordinary answers. Set BPD_RAG_SAFETY__TRIAGE_ENABLED=true to serve patients; for local development "
        "only, BPD_RAG_SAFETY__ALLOW_UNSAFE_DEV=true lets it start without triage."
    )


def _system_lines(prompts_dir: Path) -> tuple[str, ...]:
    """The long lines of the LLM's system prompt, squashed: a reply containing one leaks the prompt."""
    # The system prompt belongs to the LLM answerer and may gain variables; the leak check needs only its text.
    path = Path(prompts_dir) / "answer_system.txt"
    if not path.is_file():
        return ()
    variables = frozenset(template_variables(path.read_text(encoding="utf-8")))
    text = load_prompt(prompts_dir, "answer_system.txt", variables)
    return tuple(_squash(line) for line in text.splitlines() if len(_squash(line)) >= _LEAK_MIN_CHARS)


def _squash(text: str) -> str:
    """Lower case with single spaces, and no list numbering: for finding prompt text inside an answer."""
    return " ".join(re.sub(r"^\s*\d+[.)]\s*", "", text).lower().split())


class SafetyGuard:
    """The Guard the pipeline calls: assess() decides before retrieval, review() checks a reply."""

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
        self.system_lines = _system_lines(settings.prompts_dir)
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
        self._crisis_cache: dict[str, SafetyDecision] = {}

    # --- deciding ------------------------------------------------------------------------------------

    def assess(self, message: str, history: Sequence[Message] = ()) -> SafetyDecision:
        """What to do with a message before retrieval: crisis, refuse (injection or advice) or answer."""
        crisis = self._assess_crisis(message)
        if crisis.action == "crisis":
            return crisis
        normalised = self.spelling.normalise(message)
        had_crisis = self.had_crisis(history)
        if had_crisis and self.facilitation.search(normalised):
            return SafetyDecision(
                action="crisis",
                risk="crisis",
                category="crisis_followup",
                reason="asks for amounts or means after a crisis",
            )
        risk: RiskTier = "concern" if had_crisis else "none"
        footer = bool(self.risk_topics.search(normalised))
        for rule in self.message_injection:
            if rule.regex.search(message if rule.raw else normalised):
                return SafetyDecision(action="refuse", risk=risk, category="injection", reason=f"pattern {rule.id}")
        for rule in self.advice_rules:
            if rule.regex.search(normalised):
                return SafetyDecision(
                    action="refuse",
                    risk=risk,
                    category=rule.category,
                    reason=f"pattern {rule.id}",
                    general_question=self.general_questions.get(rule.category),
                )
        return SafetyDecision(risk=risk, footer=footer)

    def had_crisis(self, history: Sequence[Message]) -> bool:
        """Whether an earlier user turn of the conversation showed crisis."""
        return any(m.role == "user" and self._assess_crisis(m.content).action == "crisis" for m in history)

    def _assess_crisis(self, message: str) -> SafetyDecision:
        cached = self._crisis_cache.get(message)
        if cached is None:
            cached = self.crisis.assess(message)
            if len(self._crisis_cache) >= _CACHE_LIMIT:
                self._crisis_cache = {}  # replaced, not cleared in place: requests run in threads
            self._crisis_cache[message] = cached
        return cached

    def review(self, answer: Answer) -> ReplyReview:
        """Checks a reply: no system-prompt text, no quote of instruction-like document text, risk topics."""
        statements = " ".join(s.text for s in answer.statements)
        if any(line in _squash(statements) for line in self.system_lines):
            return ReplyReview(leaks_prompt=True)
        drop = [c.id for c in answer.citations if self._injection_in(c.quote) is not None]
        footer = answer.kind == "answer" and bool(
            self.risk_topics.search(self.spelling.normalise(statements, fuzzy=False))
        )
        return ReplyReview(drop_citations=drop, footer=footer)

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
