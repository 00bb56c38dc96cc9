"""Removes e-mail addresses and phone numbers from text before it is stored."""

from __future__ import annotations

import re

EMAIL_MARK = "[email]"
PHONE_MARK = "[phone]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# Digit groups joined by spaces, dots, dashes or brackets, optionally after a +country code.
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w])")
# "2019-2023", "2019 2020 2021": years, not phone numbers.
_YEARS = re.compile(r"(?:19|20)\d\d(?:[\s./-]+(?:19|20)\d\d)+")
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15  # E.164


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
    return _PHONE.sub(_phone, _EMAIL.sub(EMAIL_MARK, text))
