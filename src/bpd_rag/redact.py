"""Text people typed, made safe: e-mail addresses and phone numbers removed before it is stored, control
characters escaped before it is shown (a log line, a terminal)."""

from __future__ import annotations

import re

EMAIL_MARK = "[email]"
PHONE_MARK = "[phone]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# Addresses spelled out to get past filters: "jane at example dot com", "jane [at] example [dot] com", "jane(@)x.org".
_BRACKETED_AT = r"\s*[\[({<]\s*(?:at|@)\s*[\])}>]\s*"
_WRITTEN_DOT = r"\s*[\[({<]\s*(?:dot|\.)\s*[\])}>]\s*|\s+dot\s+"
_SPELLED_EMAIL = re.compile(
    rf"(?<![\w.+-])[\w.+-]+(?P<at>@|{_BRACKETED_AT}|\s+at\s+)"
    rf"(?P<domain>[\w-]+(?:(?:\.|{_WRITTEN_DOT})[\w-]+)*(?:\.|{_WRITTEN_DOT})[^\W\d_]{{2,}})(?![\w-])",
    re.IGNORECASE,
)
# Hyphens and dots other than ASCII that keyboards and word processors put between digit groups:
# U+2010-U+2015 (hyphen, non-breaking hyphen, figure dash, en and em dash, bar), U+2212 minus, small and
# full-width hyphen-minus; middle dot, one-dot leader, hyphenation point, full-width full stop.
_UNICODE_SEPARATORS = "\u2010-\u2015\u2212\ufe58\ufe63\uff0d\u00b7\u2024\u2027\uff0e"
# Digit groups joined by spaces, dots, dashes or brackets, optionally after a +country code.
_PHONE = re.compile(rf"(?<![\w.])\+?\(?\d[\d\s().\-{_UNICODE_SEPARATORS}]{{5,}}\d(?![\w])")
# "2019-2023", "2019–2023", "2019 2020 2021": years, not phone numbers.
_YEARS = re.compile(rf"(?:19|20)\d\d(?:[\s./\-{_UNICODE_SEPARATORS}]+(?:19|20)\d\d)+")
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15  # E.164

# What a terminal or a log reader acts on instead of showing: C0 and C1 controls and DEL (\x1b starts escape
# sequences, \n starts a new log line), the Unicode line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates that make text display in another order than it reads.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _spelled_email(match: re.Match[str]) -> str:
    at = match.group("at").strip().lower()
    # "it at psypost.org" is English; only a written-out dot or a bracketed "at" makes an address of it.
    if at in ("@", "at") and not re.search(_WRITTEN_DOT, match.group("domain"), re.IGNORECASE):
        return match.group(0)
    return EMAIL_MARK


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if not _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS or _YEARS.fullmatch(text.strip()):
        return text
    if re.fullmatch(r"\d+\.\d+", text):  # a decimal number such as 1234567.5
        return text
    return PHONE_MARK


def redact(text: str) -> str:
    """The text with e-mail addresses and phone numbers replaced by [email] and [phone]."""
    text = _SPELLED_EMAIL.sub(_spelled_email, _EMAIL.sub(EMAIL_MARK, text))
    return _PHONE.sub(_phone, text)


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _SHORT_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def printable(text: str) -> str:
    """The text with control characters shown as escapes ("\\x1b", "\\n"), safe to put in a log line or a terminal."""
    return _CONTROL.sub(_escape, text)
