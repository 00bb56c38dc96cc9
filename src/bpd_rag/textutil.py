"""Small text tools shared by chunking, BM25, answering and evaluation: sentences, terms, stemming."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import snowballstemmer

# Words that carry no topic. Question words stay out of BM25 but answering uses them for answer types.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "let's",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "may",
        "might",
        "must",
        "shall",
        "us",
        "i'm",
        "i've",
        "tell",
        "know",
        "please",
        "say",
        "says",
        "said",
        "get",
        "got",
        "like",
        "one",
        "two",
        "much",
        "many",
        "does",
        "did",
        "well",
        "really",
        "there's",
        "what's",
    ]
)

# Words a question uses for its form, not its topic ("how big", "does it help"): a question may use them
# even when the sources never do. A topic word the sources never use means they cannot answer.
QUESTION_FILLER = frozenset(
    [
        "big",
        "small",
        "large",
        "long",
        "short",
        "good",
        "bad",
        "best",
        "better",
        "worse",
        "work",
        "works",
        "worked",
        "help",
        "helps",
        "helped",
        "happen",
        "happens",
        "make",
        "makes",
        "take",
        "takes",
        "taking",
        "give",
        "gives",
        "given",
        "use",
        "used",
        "using",
        "need",
        "needs",
        "want",
        "wants",
        "feel",
        "feels",
        "thing",
        "things",
        "way",
        "ways",
        "actually",
        "exactly",
        "kind",
        "sort",
        "lot",
        "lots",
        "okay",
        "ok",
        "safe",
        "true",
        "real",
        "really",
        "usual",
        "usually",
        "common",
        "commonly",
        "possible",
        "able",
        "likely",
        "long-term",
        "anyone",
        "someone",
        "people",
        "person",
        "something",
        "anything",
        "everything",
        "mean",
        "means",
        "meant",
        "talk",
        "call",
        "called",
        "find",
        "found",
        "show",
        "shown",
    ]
)

_STEMMER = snowballstemmer.stemmer("english")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Snowball (Porter2) stem: "randomized" and "randomly" meet at "random", "doses" and "dose" at "dose"."""
    return str(_STEMMER.stemWord(word))


def words(text: str) -> list[str]:
    """Lower-case word tokens, hyphenated words kept whole."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def terms(text: str) -> list[str]:
    """Stemmed content terms (stop words removed): the unit of BM25 and lexical overlap."""
    out: list[str] = []
    for word in words(text):
        if word in STOPWORDS:
            continue
        out.append(stem(word))
        if "-" in word:  # "fast-acting" also matches "fast" and "acting"
            out.extend(stem(part) for part in word.split("-") if part and part not in STOPWORDS)
    return out


# A sentence ends at . ! ? (optionally followed by a closing quote or bracket) before white space and a
# capital, digit or opening quote; common abbreviations do not end sentences.
_ABBREVIATIONS = (
    "Dr",
    "Mr",
    "Mrs",
    "Ms",
    "Prof",
    "St",
    "vs",
    "e.g",
    "i.e",
    "etc",
    "al",
    "Fig",
    "No",
    "U.S",
    "Jr",
    "Sr",
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"”’)\]]?(?=\s+[\"“(\[]?[A-Z0-9])")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of the sentences of text[start:end], white space trimmed, lines never joined."""
    end = len(text) if end is None else end
    for line in re.finditer(r"[^\n]+", text[start:end]):
        line_start = start + line.start()
        line_text = line.group()
        cursor = 0
        for match in _BOUNDARY.finditer(line_text):
            before = line_text[cursor : match.start()]
            last_word = before.rsplit(None, 1)[-1] if before.split() else ""
            if last_word.rstrip(".!?") in _ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", last_word):
                continue
            yield from _trimmed(text, line_start + cursor, line_start + match.end())
            cursor = match.end()
        yield from _trimmed(text, line_start + cursor, line_start + len(line_text))


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def split_sentences(text: str) -> list[str]:
    """The sentences of a text."""
    return [text[s:e] for s, e in sentence_spans(text)]


_SUFFIXES = ("ing", "ed", "d", "es", "s", "er", "ers", "est", "ly", "ness", "ment", "ments", "ful", "able", "ion", "y")


def is_english_word(token: str, known_words: frozenset[str]) -> bool:
    """In the word list, or an inflection of a word in it ("quitting" from "quit", "hoping" from "hope")."""
    if token in known_words:
        return True
    for suffix in _SUFFIXES:
        stem = token[: -len(suffix)]
        if not token.endswith(suffix) or len(stem) < 3:
            continue
        undoubled = stem[:-1] if stem[-1] == stem[-2] else stem
        if stem in known_words or stem + "e" in known_words or undoubled in known_words:
            return True
        if stem.endswith("i") and stem[:-1] + "y" in known_words:
            return True
    return False


@lru_cache(maxsize=4)
def load_known_words(vocab_file: Path | None) -> frozenset[str]:
    """Real English words (whole words of a WordPiece vocabulary), which fuzzy correction leaves alone."""
    if vocab_file is None:
        return frozenset()
    try:
        lines = vocab_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and w.islower())


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def one_edit(word: str) -> set[str]:
    """Every string one deletion, transposition, replacement or insertion away from word."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return deletes | transposes | replaces | inserts


# First words that make a message a question even without "?" (patients often leave it out). English and
# Spanish, the languages the bot answers in; a statement ("i feel so empty") starts with none of them.
_QUESTION_OPENERS = frozenset(
    [
        "what",
        "whats",
        "what's",
        "how",
        "hows",
        "how's",
        "why",
        "when",
        "where",
        "who",
        "whos",
        "who's",
        "which",
        "whose",
        "is",
        "isnt",
        "isn't",
        "are",
        "arent",
        "aren't",
        "does",
        "doesnt",
        "doesn't",
        "do",
        "dont",
        "don't",
        "did",
        "didnt",
        "didn't",
        "can",
        "cant",
        "can't",
        "could",
        "couldnt",
        "should",
        "shouldnt",
        "will",
        "wont",
        "won't",
        "would",
        "was",
        "were",
        "has",
        "have",
        "had",
        "may",
        "might",
        "any",
        "anything",
        "tell",
        "explain",
        "define",
        "describe",
        "compare",
        "pros",
        "cons",
        "qué",
        "que",
        "cómo",
        "como",
        "por",
        "cuál",
        "cual",
        "cuáles",
        "cuando",
        "cuándo",
        "dónde",
        "donde",
        "quién",
        "quien",
        "es",
        "son",
        "puede",
        "pueden",
        "hay",
        "cuanto",
        "cuánto",
        "cuanta",
        "cuánta",
        "cuantos",
        "cuántos",
        "cuantas",
        "cuántas",
        "sirve",
        "funciona",
    ]
)


# Words a question often starts with before its question word ("and how long...", "wait, which one...").
_LEAD_INS = frozenset(
    [
        "and",
        "so",
        "but",
        "ok",
        "okay",
        "wait",
        "hmm",
        "um",
        "uh",
        "also",
        "then",
        "like",
        "oh",
        "well",
        "yeah",
        "yea",
        "lol",
        "pero",
        "y",
        "entonces",
        "bueno",
    ]
)


# A question about the treatment run on after a statement with no comma: "my son has bpd and cuts himself will
# ketamine stop that". An auxiliary followed by the treatment as its subject only asks ("ketamine will help" and
# "it can be hard" put the subject first).
_ASKS_ABOUT_TREATMENT = re.compile(
    r"\b(?:will|would|can|could|does|do|did|is|should)\s+(?:the\s+)?(?:ketamine|esketamine|spravato|infusions?)\b",
    re.I,
)


def looks_like_question(text: str) -> bool:
    """Whether a message asks something: a question mark, a clause that starts with a question word (after
    lead-ins such as "and", "so", "wait"), or an auxiliary with the treatment as its subject anywhere."""
    if "?" in text or "¿" in text or _ASKS_ABOUT_TREATMENT.search(text):
        return True
    for clause in re.split(r"[.,;:!\n]+", text.lower()):
        words = [w.strip("\"'¡()") for w in clause.split()]
        while words and words[0] in _LEAD_INS:
            words = words[1:]
        if words and words[0] in _QUESTION_OPENERS:
            return True
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """The text with lone surrogates (valid in JSON, not in UTF-8: tokenizers and SQLite reject them) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def safe_url(url: str | None) -> str | None:
    """The URL if it is an http(s) link to a host, else None: a javascript: or data: URL from a document's front
    matter must never reach a reader as a link."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None  # a link never holds spaces or control characters; text after them would read as more link
    return url


def expand_shorthand(text: str, shorthand: Mapping[str, str]) -> str:
    """The text with each whole word of the reviewed shorthand list replaced ("ppl" -> "people")."""
    if not shorthand:
        return text
    return re.sub(r"[A-Za-z0-9]+", lambda m: shorthand.get(m.group().lower(), m.group()), text)
