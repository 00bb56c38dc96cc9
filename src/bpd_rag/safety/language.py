"""Which language a message is in: py3langid (its model ships inside the package) over the folded text,
with English kept for the short and slangy messages a language identifier cannot place ("kms rn", "ok bye")."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

# Languages the identifier may answer with: the languages US patients write most after English, and those
# of the risk data set. Limiting the set keeps short English from being read as, say, Afrikaans.
LANGUAGES = (
    "en", "es", "fr", "de", "pt", "zh", "it", "vi", "tl", "ar", "ru", "ko", "ja", "hi", "pl", "uk", "ht", "nl",
    "tr", "fa",
)  # fmt: skip
# A message is read as another language only when the identifier is at least this sure (normalised
# probability); below it, English (and both models read it, see `unsure`). Chosen on the risk data set's
# dev split: 0.75 keeps short English slang English and every other message of at least three words where
# it belongs.
_SURE = 0.75
# Below _SURE but at least this sure of another language, both models read a message (short English slang
# scores lower than this: "kms rn", "ok bye", "lol jk" score 0.05-0.47 on the data set).
_LEANS = 0.5
_WORD = re.compile(r"[^\W\d_]+")
_FOREIGN_LETTER = re.compile(r"(?=[^\x00-\x7f])[^\W\d_]")  # a letter outside ASCII: "á", "ñ", "死" (not an emoji)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


_CLASSIFY_LOCK = threading.Lock()


@lru_cache(maxsize=1024)
def _classify(folded: str) -> tuple[str, float]:
    """The identifier's reading of a folded text (cached: a message is asked about by its language, whether it
    may be in another and which one it leans to)."""
    with _CLASSIFY_LOCK:  # the identifier keeps state between calls
        code, probability = _identifier().classify(folded)
    return str(code), float(probability)


class Language:
    """Identifies the language of a message (ISO 639-1), English when unsure."""

    def __init__(self, fold: Callable[[str], str]) -> None:
        self.fold = fold

    def guess(self, text: str) -> tuple[str, float]:
        """The identifier's best language and how sure it is (0-1)."""
        folded = self.fold(text)
        if not _WORD.search(folded):
            return "en", 0.0
        return _classify(folded)

    def of(self, text: str) -> str:
        """The message's language: another language only when the identifier is sure of it."""
        code, probability = self.guess(text)
        return code if code != "en" and probability >= _SURE else "en"

    def unsure(self, text: str) -> bool:
        """Whether a message read as English may be in another language (the identifier leans that way, or it
        has letters outside ASCII): the multilingual model then reads it too."""
        code, probability = self.guess(text)
        return (code != "en" and probability >= _LEANS) or bool(_FOREIGN_LETTER.search(text))

    def leaning(self, text: str) -> str:
        """The other language a message read as English leans to (at least _LEANS sure), or ""."""
        code, probability = self.guess(text)
        return code if code != "en" and _LEANS <= probability < _SURE else ""

    def prepare(self) -> None:
        """Load the identifier's model now (about half a second) rather than on the first message."""
        _identifier()
