"""SafetyGuard: decides what to do with a message before retrieval (crisis, refusal of prompt injection or
personal medical advice, or answer, with the risk tier) and checks replies before they are sent; also
flags instruction-like text in corpus documents. It returns decisions: the pipeline composes the reply."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bpd_rag.embeddings import Embedder
from bpd_rag.errors import ConfigurationError
from bpd_rag.prompts import load_prompt, template_variables
from bpd_rag.safety.crisis import CrisisPatterns
from bpd_rag.safety.language import Language
from bpd_rag.safety.risk import Reading, RiskModel, RiskReader
from bpd_rag.safety.rules import Rule, compile_regex, default_data_dir, load_rules, read_yaml
from bpd_rag.safety.text import Spelling, split_sentences
from bpd_rag.settings import Settings
from bpd_rag.textutil import load_known_words
from bpd_rag.types import Answer, Message, ReplyReview, RiskTier, SafetyDecision

_CACHE_LIMIT = 4096
_SCANNED_SUFFIXES = (".md", ".txt")  # files whose lines are the document's lines, so line numbers match
_ASKED_WORDS = 2  # fewer words after a told diagnosis ("i have bpd too") ask nothing
# An ordinary goodbye is not taken for a farewell only when no earlier turn came near a crisis: half the crisis
# threshold ("does ketamine help bpd" reads 0.0-0.1 of it, a question on suicidal thoughts as a topic may read more).
_SIGN_OFF_EARLIER = 0.5
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


# Earlier user turns the safety layer reads, and how much of each: the cost of a request stays bounded
# however long the history a client sends (a conversation id avoids even that: see ConversationRisk).
HISTORY_TURNS = 6
TURN_CHARS = 1000
# Turns read together to find risk that builds up ("im so tired" ... "i just want it all to stop").
WINDOW_TURNS = 3


def turn_key(message: str) -> str:
    """What a conversation remembers of a turn: a hash, never the text."""
    return hashlib.sha256(message.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass
class ConversationRisk:
    """What the safety layer keeps of one conversation on the server: each user turn's crisis score (by the
    turn's hash) and whether risk was raised. No message text. Kept even when a client drops its history."""

    turns: dict[str, float] = field(default_factory=dict)
    raised: bool = False
    concern: bool = False  # a recent turn had a risk signal below crisis

    def record(self, message: str, decision: SafetyDecision) -> None:
        """Remember a turn once it has been decided."""
        self.turns.pop(turn_key(message), None)  # a repeated turn counts as the latest
        self.turns[turn_key(message)] = decision.turn_risk
        if len(self.turns) > 4 * HISTORY_TURNS:  # only recent turns are ever looked up
            for key in list(self.turns)[: len(self.turns) - 4 * HISTORY_TURNS]:
                del self.turns[key]
        self.raised = self.raised or decision.action == "crisis"
        self.concern = self.concern or decision.risk != "none"

    def recent(self) -> list[float]:
        """The crisis scores of the latest turns, oldest first (for a client that sent no history)."""
        return list(self.turns.values())[-HISTORY_TURNS:]


class SafetyGuard:
    """The Guard the pipeline calls: assess() decides before retrieval, review() checks a reply."""

    name = "safety"

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        data_dir: Path | None = None,
        model: RiskModel | None = None,
    ) -> None:
        data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.system_lines = _system_lines(settings.prompts_dir)
        self.spelling = Spelling.from_data(read_yaml(data_dir / "spelling.yaml"), _known_words())
        crisis_rules, crisis_extra = load_rules(
            data_dir / "crisis_patterns.yaml", frozenset({"any", "personal", "third"})
        )
        self.patterns = CrisisPatterns(crisis_rules, crisis_extra["fragments"])
        self.risk_topics = compile_regex(
            str(crisis_extra.get("risk_topics", r"(?!)")), "crisis_patterns.yaml risk_topics"
        )
        self.facilitation = compile_regex(
            str(crisis_extra.get("facilitation_after_crisis", r"(?!)")),
            "crisis_patterns.yaml facilitation_after_crisis",
        )
        self.overdose = compile_regex(str(crisis_extra.get("overdose", r"(?!)")), "crisis_patterns.yaml overdose")
        self.sign_off = {
            language: compile_regex(str(crisis_extra.get(key, r"(?!)")), f"crisis_patterns.yaml {key}")
            for language, key in (("en", "sign_off"), ("es", "sign_off_es"))
        }
        self.risk_referents = compile_regex(
            str(crisis_extra.get("risk_referents", r"(?!)")), "crisis_patterns.yaml risk_referents"
        )
        self.referring_words = _referring_words(crisis_extra.get("referring_words") or [])
        self.advice_rules, advice_extra = load_rules(data_dir / "advice_patterns.yaml")
        self.general_questions = _general_questions(advice_extra)
        self.advice_topics = [
            (str(t["topic"]), compile_regex(str(t["regex"]), f"advice_patterns.yaml topic {t.get('topic')}"))
            for t in advice_extra.get("topics") or []
        ]
        self.statements = [
            compile_regex(str(regex), "advice_patterns.yaml statements")
            for regex in advice_extra.get("statements") or []
        ]
        self.about_groups = [
            compile_regex(str(regex), "advice_patterns.yaml about_groups")
            for regex in advice_extra.get("about_groups") or []
        ]
        self.personal = compile_regex(str(advice_extra.get("personal", r"(?!)")), "advice_patterns.yaml personal")
        injection_rules, _ = load_rules(data_dir / "injection_patterns.yaml")
        self.message_injection = [r for r in injection_rules if r.where in ("message", "both")]
        self.document_injection = [r for r in injection_rules if r.where in ("document", "both")]
        self.language = Language(self.spelling.fold)
        self.reader = RiskReader(
            model or RiskModel.load(), embedder, self.spelling.fold, split_sentences, self.language
        )
        self._readings: dict[tuple[str, str], Reading] = {}
        self.ready = False  # warm_up() has loaded everything a first message needs

    # --- deciding ------------------------------------------------------------------------------------

    def read(self, message: str, language: str) -> Reading:
        """The model's reading of one message (kept: earlier turns come back with every request)."""
        key = (message, language)
        reading = self._readings.get(key)
        if reading is None:
            reading = self.reader.read(message, language)
            if len(self._readings) >= _CACHE_LIMIT:
                self._readings = {}  # replaced, not cleared in place: requests run in threads
            self._readings[key] = reading
        return reading

    def assess(
        self, message: str, history: Sequence[Message] = (), conversation: ConversationRisk | None = None
    ) -> SafetyDecision:
        """Crisis, refuse (injection or personal advice) or answer, with the risk tier; before any retrieval.

        Fail safe: any risk signal that is not judged a crisis makes the tier "concern", so the reply carries
        the resources whatever its kind.
        """
        language = self.language.of(message)
        reading = self.read(message, language)
        normalised = self.spelling.normalise(message)
        crisis = self._crisis(message, normalised, reading, language)
        turns = _user_turns(history)
        if crisis is not None and not (
            crisis.reason.startswith("model") and self._signs_off(normalised, language, turns, conversation)
        ):
            return crisis
        if crisis is not None:  # an ordinary goodbye read as a farewell by the model alone: the concern tier
            return SafetyDecision(
                language=language,
                risk="concern",
                smalltalk=True,
                sign_off=True,
                turn_risk=reading.crisis,
                reason=f"sign-off read as crisis by the model ({reading.crisis:.2f})",
            )
        earlier = self._earlier_turns(turns, conversation, language)
        raised = any(score >= 1.0 for score in earlier) or (conversation is not None and conversation.raised)
        # Risk accumulates: once a turn of this conversation showed a risk signal, later replies keep the
        # resources (concern) even when the later turn is harmless alone.
        earlier_concern = conversation is not None and conversation.concern
        # Read as distress or crisis, or about means, or in a conversation that already showed risk: the concern
        # tier's reply to a question that finds nothing is the distress reply, not "nothing found".
        troubled = reading.troubled or reading.kind == "method" or raised or earlier_concern
        base = SafetyDecision(language=language, turn_risk=reading.crisis, troubled=troubled)
        if raised and (self.facilitation.search(normalised) or reading.concern >= 1.0):
            return base.model_copy(
                update={"action": "crisis", "risk": "crisis", "category": "followup", "reason": "risk after a crisis"}
            )
        owned = self._owned_risk(normalised, turns, language)
        if owned is not None:
            return base.model_copy(
                update={"action": "crisis", "risk": "crisis", "category": owned[0], "reason": owned[1]}
            )
        if turns:
            window = [*(m.content[:TURN_CHARS] for m in turns[-(WINDOW_TURNS - 1) :]), message]
            score = self.reader.window(window, language)
            if score >= 1.0:
                reason = f"turns together {score:.2f}"
                return base.model_copy(
                    update={"action": "crisis", "risk": "crisis", "category": "buildup", "reason": reason}
                )
        risk: RiskTier = "concern" if raised or earlier_concern or reading.concern >= 1.0 else "none"
        footer = bool(self.risk_topics.search(normalised))
        for rule in self.message_injection:
            if rule.regex.search(message if rule.raw else normalised):
                reason = f"pattern {rule.id}"
                return base.model_copy(
                    update={"action": "refuse", "risk": risk, "category": "injection", "reason": reason}
                )
        advice = next((rule for rule in self.advice_rules if rule.regex.search(normalised)), None)
        # Only telling the bot about a diagnosis asks for nothing: the model's reading of advice does not count.
        told = _told_of_diagnosis(normalised, self.statements)
        statement = told is not None and not told
        # What is asked after a told diagnosis is what the advice reading is about.
        asked = self.read(told, language) if told else reading
        # A question about a group ("can kids get ketamine") is not refused on the model's reading alone.
        general = self._about_a_group(told or normalised)
        asks_advice = asked.advice >= 1.0 and not statement and not general
        if advice is not None or asks_advice:
            topic = advice.category if advice is not None else self._advice_topic(normalised)
            return base.model_copy(
                update={
                    "action": "refuse",
                    "risk": risk,
                    "category": topic,
                    "reason": f"pattern {advice.id}" if advice is not None else f"model {reading.advice:.2f}",
                    "general_question": self.general_questions.get(topic),
                }
            )
        # Over the concern threshold (under the crisis one) and read as an overdose, and not a request for advice:
        # an overdose that may have happened gets the crisis reply (Poison Control and 911 first), not an answer
        # with a check-in.
        if reading.concern >= 1.0 and reading.kind == "overdose":
            reason = f"overdose at concern {reading.crisis:.2f}"
            return base.model_copy(
                update={"action": "crisis", "risk": "crisis", "category": "overdose", "reason": reason}
            )
        leaning = self.language.leaning(message) if language == "en" else ""
        return base.model_copy(
            update={
                "risk": risk,
                "footer": footer,
                "smalltalk": reading.smalltalk >= 0.5,
                "statement": statement,
                "leaning": leaning,
            }
        )

    def _signs_off(
        self, normalised: str, language: str, turns: Sequence[Message], conversation: ConversationRisk | None
    ) -> bool:
        """Whether the whole message is an ordinary thanks and goodbye (crisis_patterns.yaml sign_off) in a
        conversation that showed no risk before: a goodbye after a turn with a risk signal may be a farewell."""
        grammar = self.sign_off.get(language)
        if grammar is None or grammar.fullmatch(normalised.strip()) is None:
            return False
        if conversation is not None and (conversation.raised or conversation.concern):
            return False
        return all(score < _SIGN_OFF_EARLIER for score in self._earlier_turns(turns, conversation, language))

    def _about_a_group(self, normalised: str) -> bool:
        """Whether the message asks about a group of people or what the treatment is for, saying nothing of the
        person asking or anyone close to them (advice_patterns.yaml about_groups)."""
        text = normalised.strip()
        return not self.personal.search(text) and any(regex.match(text) for regex in self.about_groups)

    def _crisis(self, message: str, normalised: str, reading: Reading, language: str) -> SafetyDecision | None:
        """A crisis decision when a reviewed pattern or the model finds current risk in the message."""
        rule = self.patterns.match(self.spelling, message)
        if rule is None and reading.crisis < 1.0:
            return None
        if (rule is not None and rule.category == "method") or reading.kind == "method":
            category = "method"
        elif self.overdose.search(normalised) or reading.kind == "overdose" or (rule and rule.category == "overdose"):
            category = "overdose"
        else:
            category = rule.category if rule is not None else "risk"
        reason = f"pattern {rule.id}" if rule is not None else f"model {reading.crisis:.2f}"
        return SafetyDecision(
            action="crisis",
            risk="crisis",
            category=category,
            reason=reason,
            language=language,
            turn_risk=reading.crisis,
        )

    def _owned_risk(self, normalised: str, turns: Sequence[Message], language: str) -> tuple[str, str] | None:
        """The crisis category and reason when the message reads as a crisis (a pattern, else the model) once the
        words referring to a risk named in the previous user turn are replaced by it ("because mine are really
        bad right now" -> "because my suicidal thoughts are really bad right now")."""
        if not turns or not self.referring_words:
            return None
        named = self.risk_referents.findall(self.spelling.normalise(turns[-1].content[:TURN_CHARS]))
        if not named:
            return None
        topic = named[-1]
        resolved = normalised
        for regex, becomes in self.referring_words:
            resolved = regex.sub(becomes.replace("{topic}", topic), resolved)
        if resolved == normalised:
            return None
        rule = self.patterns.match_normalised(resolved)
        if rule is not None:
            return rule.category, f"pattern {rule.id} on the risk named before"
        score = self.read(resolved, language).crisis
        return ("risk", f"model {score:.2f} on the risk named before") if score >= 1.0 else None

    def _earlier_turns(
        self, turns: Sequence[Message], conversation: ConversationRisk | None, language: str
    ) -> list[float]:
        """Crisis scores of the recent earlier user turns: remembered by the conversation, or read (bounded). A
        client that sent no history gets the scores the conversation kept (the client dropped its history; the
        server did not)."""
        if not turns and conversation is not None:
            return conversation.recent()
        scores = []
        for turn in turns[-HISTORY_TURNS:]:
            remembered = conversation.turns.get(turn_key(turn.content)) if conversation is not None else None
            if remembered is None:
                text = turn.content[:TURN_CHARS]
                remembered = 1.0 if self.patterns.match(self.spelling, text) else self.read(text, language).crisis
            scores.append(remembered)
        return scores

    def _advice_topic(self, normalised: str) -> str:
        """The topic of an advice request the model found (for the general information beside the refusal)."""
        return next((topic for topic, regex in self.advice_topics if regex.search(normalised)), "medication")

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
        """Load the language identifier and both models and read one message now, so no message waits."""
        self.language.prepare()
        self.reader.multilingual.prepare()
        self.reader.read("warm up", "en")
        self.ready = True

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


def _user_turns(history: Sequence[Message]) -> list[Message]:
    return [m for m in history if m.role == "user" and m.content.strip()]


def _told_of_diagnosis(normalised: str, statements: Sequence[re.Pattern[str]]) -> str | None:
    """What a message asks after telling of a diagnosis ("" when it only tells of one; None when it does not
    start by telling of one)."""
    text = normalised.strip()
    for regex in statements:
        found = regex.match(text)
        if found is not None and (found.end() == len(text) or text[found.end()] == " "):
            rest = text[found.end() :].strip()
            return rest if len(rest.split()) >= _ASKED_WORDS else ""
    return None


def _referring_words(items: object) -> list[tuple[re.Pattern[str], str]]:
    if not isinstance(items, list) or not all(isinstance(i, dict) and "regex" in i and "becomes" in i for i in items):
        raise ConfigurationError("crisis_patterns.yaml: referring_words must be a list of {regex, becomes}")
    return [(compile_regex(str(i["regex"]), "crisis_patterns.yaml referring_words"), str(i["becomes"])) for i in items]


def _general_questions(extra: dict[str, object]) -> dict[str, str]:
    questions = extra.get("general_questions") or {}
    if not isinstance(questions, dict):
        raise ConfigurationError("advice_patterns.yaml: general_questions must be a mapping of topic to question")
    return {str(k): str(v) for k, v in questions.items() if v}
