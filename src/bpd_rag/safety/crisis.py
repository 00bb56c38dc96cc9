"""The reviewed crisis patterns: a high-precision layer beside the learned model. A pattern fires on a sentence
of the normalised message in its scope (personal, about someone else, or any); negation is the model's job,
apart from the few words right before a match ("i would never kill myself")."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bpd_rag.errors import ConfigurationError
from bpd_rag.safety.rules import Rule
from bpd_rag.safety.text import Spelling, split_sentences

# How many words before a match are searched for a negation ("i would never kill myself").
_NEGATION_WINDOW = 3


class CrisisPatterns:
    """Crisis patterns from data/safety/crisis_patterns.yaml, matched sentence by sentence."""

    def __init__(self, rules: Sequence[Rule], fragments: dict[str, re.Pattern[str]]) -> None:
        missing = {"FIRST", "THIRD", "GENERIC", "NEGATION"} - set(fragments)
        if missing:
            raise ConfigurationError(f"crisis_patterns.yaml: fragments {sorted(missing)} are required")
        self.rules = list(rules)
        self.first = fragments["FIRST"]
        self.third = fragments["THIRD"]
        self.generic = fragments["GENERIC"]
        self.negation = fragments["NEGATION"]
        self.negation_right_before = fragments.get("NEGATION_RIGHT_BEFORE")

    def match(self, spelling: Spelling, message: str) -> Rule | None:
        """The first pattern that matches a sentence of the message in its scope."""
        for sentence in split_sentences(message):
            normalised = spelling.normalise(sentence)
            if normalised:
                rule = self.match_normalised(normalised)
                if rule is not None:
                    return rule
        return None

    def match_normalised(self, sentence: str) -> Rule | None:
        """The first pattern that matches a normalised sentence in its scope."""
        for rule in self.rules:
            for found in rule.regex.finditer(sentence):
                if self._in_scope(rule, sentence, found):
                    return rule
        return None

    def _in_scope(self, rule: Rule, sentence: str, found: re.Match[str]) -> bool:
        if rule.scope == "any":
            return True
        before = " ".join(sentence[: found.start()].split()[-_NEGATION_WINDOW:])
        if self.negation.search(before):
            return False
        if self.negation_right_before is not None and self.negation_right_before.search(sentence[: found.start()]):
            return False
        if rule.scope == "third":
            return bool(self.third.search(sentence))
        # personal: about the writer, or at least not a question about people in general
        return bool(self.first.search(sentence)) or not self.generic.search(sentence)
