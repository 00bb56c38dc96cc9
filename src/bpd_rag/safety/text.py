"""Normalise messages for the safety checks: lower case, chat shorthand, misspellings and idioms."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from bpd_rag.errors import ConfigurationError
from bpd_rag.textutil import is_english_word

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"'})
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_REPEATS = re.compile(r"([a-z])\1{2,}")  # "sooo" -> "soo", "killll" -> "kill"
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_NORMALISED_LIMIT = 8192
_ABBREVIATION = re.compile(r"\b(?:dr|mr|mrs|ms|prof|st|vs|approx|e\.g|i\.e|etc|no)\.$", re.IGNORECASE)


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
        text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
        text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
        for pattern, replacement in self.raw_replacements:
            text = pattern.sub(replacement, text)
        text = text.replace("'", "")
        words: list[str] = []
        for raw in text.split():
            # Leetspeak only inside words that also have letters ("k1ll"), never in numbers ("70 kg").
            if re.search(r"[a-z]", raw) and re.search(r"[0-9@$]", raw) and not re.fullmatch(r"[0-9.,]+[a-z]{1,3}", raw):
                raw = raw.translate(_LEET)
            for token in _NOT_WORD.split(raw):
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
    if len(token) < 4 or token.isdigit() or is_english_word(token, known_words):
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
