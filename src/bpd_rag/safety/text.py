"""Normalise messages for the safety checks: lower case, chat shorthand, misspellings and idioms."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from bpd_rag.errors import ConfigurationError
from bpd_rag.textutil import is_english_word

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"'})
_NOT_WORD = re.compile(r"[^\w]+|_+")  # letters of any script and digits are words; everything else splits
_REPEATS = re.compile(r"([a-z])\1{2,}")  # "sooo" -> "soo", "killll" -> "kill"
# Symbols that stand for letters in obfuscated words ("k1ll", "su!c!de", "$elf h@rm").
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"}
)
# Characters people put between the letters of a word to get it past a filter ("k.m.s", "s-u-i-c-i-d-e").
_SEPARATORS = re.compile(r"[.*_~\-+]+")
_EDGE_PUNCTUATION = "\"'()[]{}<>,;:?"
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？])\s+|\n+")
_NORMALISED_LIMIT = 8192
_ABBREVIATION = re.compile(r"\b(?:dr|mr|mrs|ms|prof|st|vs|approx|e\.g|i\.e|etc|no)\.$", re.IGNORECASE)
# Emoji whose Unicode name says less than the picture does.
_SYMBOL_WORDS = {"🔪": "knife", "🔫": "gun", "🪢": "rope knot", "💊": "pill", "🪦": "grave headstone"}


def symbol_words(text: str) -> str:
    """Emoji and other pictographs as words ("💊" -> " pill "), so the signal survives for text models.

    Variation selectors, joiners and skin-tone modifiers carry nothing and are dropped.
    """
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "So":
            name = _SYMBOL_WORDS.get(ch) or unicodedata.name(ch, "").lower()
            out.append(f" {name} " if name else " ")
        elif category in ("Mn", "Cf", "Sk") and not ch.isalnum() and ord(ch) > 0x2000:
            continue
        else:
            out.append(ch)
    return "".join(out)


def _core(token: str) -> tuple[str, str, str]:
    """A token as (leading punctuation, word, trailing punctuation)."""
    stripped = token.strip(_EDGE_PUNCTUATION + ".!")
    if not stripped:
        return "", token, ""
    start = token.index(stripped)
    return token[:start], stripped, token[start + len(stripped) :]


def unmask(token: str, known: Callable[[str], bool]) -> str:
    """An obfuscated word made readable when that gives a real word ("k1ll" -> "kill", "s*icide" -> "suicide",
    "k.m.s" -> "kms"); anything else, numbers and codes like "ld50" included, is left as it is."""
    lead, word, trail = _core(token)
    if not re.search(r"[a-z]", word) or known(word):
        return token
    candidates = []
    if re.search(r"[0-9@$!|]", word):
        candidates.append(word.translate(_LEET))
    if _SEPARATORS.search(word):
        joined = _SEPARATORS.sub("", word)
        candidates += [joined, joined.translate(_LEET)]
        if "*" in word:
            candidates += [word.replace("*", v, 1).replace("*", "") for v in "aeiou"]
    for candidate in candidates:
        if candidate != word and candidate.isalpha() and known(candidate):
            return lead + candidate + trail
    return token


def _join_spelled(tokens: list[str], known: Callable[[str], bool]) -> list[str]:
    """Runs of single letters written apart ("s u i c i d e") joined when they spell a real word."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and len(tokens[j]) == 1 and tokens[j].isalpha():
            j += 1
        if j - i >= 3 and known("".join(tokens[i:j])):
            out.append("".join(tokens[i:j]))
            i = j
        else:
            out.append(tokens[i])
            i += 1
    return out


def fold(text: str, known: Callable[[str], bool]) -> str:
    """What a text model reads: lower case, emoji as words, obfuscations unmasked; letters of every script,
    digits ("ld50", "19") and sentence punctuation kept."""
    text = unicodedata.normalize("NFKC", text.translate(_QUOTES))
    text = symbol_words(text).lower()
    tokens = [unmask(t, known) for t in text.split()]
    return " ".join(_join_spelled(tokens, known))


@dataclass(frozen=True)
class Spelling:
    """How text is normalised (from data/safety/spelling.yaml): replacements, risk vocabulary, idioms."""

    raw_replacements: tuple[tuple[re.Pattern[str], str], ...] = ()
    replacements: Mapping[str, str] = field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()
    idioms: tuple[tuple[re.Pattern[str], str], ...] = ()
    known_words: frozenset[str] = frozenset()
    # normalise() results: one message is normalised by the crisis check, the triage and the reply check.
    _normalised: dict[tuple[str, bool, bool], str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, object], known_words: Iterable[str] = ()) -> Spelling:
        """Build from the parsed YAML mapping; patterns are compiled here so a bad one fails at startup."""

        def pairs(key: str) -> tuple[tuple[re.Pattern[str], str], ...]:
            items = data.get(key) or []
            if not isinstance(items, list):
                raise ConfigurationError(f"spelling.yaml: '{key}' must be a list of pattern/replacement pairs")
            out = []
            for item in items:
                try:
                    out.append((re.compile(item["pattern"]), str(item["replacement"])))
                except (KeyError, TypeError, re.error) as exc:
                    raise ConfigurationError(f"spelling.yaml: bad entry {item!r} under '{key}' ({exc})") from exc
            return tuple(out)

        replacements = data.get("replacements") or {}
        vocabulary = data.get("risk_vocabulary") or []
        if not isinstance(replacements, dict) or not isinstance(vocabulary, list):
            raise ConfigurationError("spelling.yaml: 'replacements' must be a mapping and 'risk_vocabulary' a list")
        return cls(
            raw_replacements=pairs("raw_replacements"),
            replacements={str(k): "" if v is None else str(v) for k, v in replacements.items()},
            vocabulary=tuple(str(w) for w in vocabulary),
            idioms=pairs("idioms"),
            known_words=frozenset(known_words) | frozenset(str(w) for w in vocabulary),
        )

    def correct(self, token: str) -> str:
        """A misspelled risk word corrected ("endng" -> "ending"); real words and short tokens stay as they are."""
        return _correct(token, self.vocabulary, self.known_words)

    def known(self, word: str) -> bool:
        """A real word, a risk word or chat shorthand the replacements know ("kms")."""
        return word in self.replacements or is_english_word(word, self.known_words)

    def fold(self, text: str) -> str:
        """What the risk model reads (bpd_rag.safety.text.fold with this vocabulary), reviewed idioms rewritten
        ("scared to death" is "very scared"): an idiom is known for sure, the model only guesses."""
        folded = fold(text, self.known)
        for pattern, replacement in self.idioms:
            folded = pattern.sub(replacement, folded)
        return folded

    def normalise(self, text: str, idioms: bool = True, fuzzy: bool = True) -> str:
        """Lower-case words separated by single spaces, shorthand expanded, misspellings corrected."""
        key = (text, idioms, fuzzy)
        cached = self._normalised.get(key)
        if cached is None:
            cached = self._normalise(text, idioms, fuzzy)
            if len(self._normalised) >= _NORMALISED_LIMIT:
                self._normalised.clear()
            self._normalised[key] = cached
        return cached

    def _normalise(self, text: str, idioms: bool, fuzzy: bool) -> str:
        text = self.fold(text)
        # Accents off letters ("suicídio" -> "suicidio"), then composed again: Hangul syllables, which the
        # decomposition splits into letters, are whole again for the patterns.
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
        text = unicodedata.normalize("NFC", text)
        for pattern, replacement in self.raw_replacements:
            text = pattern.sub(replacement, text)
        text = text.replace("'", "")
        words: list[str] = []
        for token in _NOT_WORD.split(text):
            if not token:
                continue
            token = _REPEATS.sub(r"\1\1", token)
            expansion = self.replacements.get(token)
            if expansion is not None:
                words.extend(expansion.split())
            else:
                words.append(self.correct(token) if fuzzy else token)
        out = " ".join(words)
        if idioms:
            for pattern, replacement in self.idioms:
                out = pattern.sub(replacement, out)
            out = " ".join(out.split())
        return out


@lru_cache(maxsize=8192)
def _correct(token: str, vocabulary: tuple[str, ...], known_words: frozenset[str]) -> str:
    if len(token) < 4 or not token.isascii() or not token.isalpha() or is_english_word(token, known_words):
        return token
    # Same first letter, same length give or take two: "suicidality" must not become "suicidal".
    candidates = [w for w in vocabulary if w[0] == token[0] and abs(len(w) - len(token)) <= 2]
    match = difflib.get_close_matches(token, candidates, n=1, cutoff=0.8)
    return match[0] if match else token


def split_sentences(text: str) -> list[str]:
    """The message's sentences (a mixed message is judged sentence by sentence as well as whole)."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if out and _ABBREVIATION.search(out[-1]):  # "Dr. Ket" is one sentence
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out
