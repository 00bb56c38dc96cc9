"""E-mail addresses and phone numbers are removed before text is stored; doses, years and crisis lines stay.
Control characters are escaped before text people typed is shown."""

from __future__ import annotations

import pytest

from bpd_rag.redact import printable, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+bpd@example.co.uk now", "mail [email] now"),
        ("call 555-123-4567", "call [phone]"),
        ("call +1 (555) 123 4567.", "call [phone]."),
        ("my mobile 07700 900123", "my mobile [phone]"),
        ("5551234567", "[phone]"),
        ("0.5 mg/kg over 40 minutes in 22 adults", "0.5 mg/kg over 40 minutes in 22 adults"),
        ("studies from 2019-2023 and 2020 2021 2022", "studies from 2019-2023 and 2020 2021 2022"),
        ("call or text 988, text HOME to 741741", "call or text 988, text HOME to 741741"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "dash",
    [
        "\u2010",  # hyphen
        "\u2011",  # non-breaking hyphen (word processors put it in phone numbers so they do not wrap)
        "\u2012",  # figure dash
        "\u2013",  # en dash
        "\u2212",  # minus sign
    ],
)
def test_phone_numbers_with_unicode_hyphens_are_redacted(dash: str) -> None:
    assert redact(f"call 555{dash}123{dash}4567 tonight") == "call [phone] tonight"
    assert redact(f"or +44 7700{dash}900{dash}123.") == "or [phone]."


# Full stop, middle dot, one-dot leader, full-width full stop.
@pytest.mark.parametrize("dot", [".", "\u00b7", "\u2024", "\uff0e"])
def test_phone_numbers_with_dots_are_redacted(dot: str) -> None:
    assert redact(f"ring 555{dot}123{dot}4567") == "ring [phone]"


def test_year_ranges_with_unicode_dashes_stay() -> None:
    assert redact("trials from 2019\u20132023 and 2020\u20122021") == "trials from 2019\u20132023 and 2020\u20122021"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane at example dot com please", "write to [email] please"),
        ("jane [at] example [dot] com", "[email]"),
        ("Jane.Doe (AT) mail (DOT) example (DOT) org", "[email]"),
        ("jane{at}example{dot}co{dot}uk!", "[email]!"),
        ("JANE AT EXAMPLE DOT COM", "[email]"),
        ("jane [at] example.com", "[email]"),
        ("jane@example dot com", "[email]"),
        ("jane at example [dot] com", "[email]"),
    ],
)
def test_spelled_out_email_addresses_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I read about it at psypost.org",  # "at" before a web address is English, not an e-mail address
        "look at the data",
        "we meet at 5 dot 30",
        "the clinic is at 221 Example Street",
    ],
)
def test_english_with_at_and_dot_stays(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/healthz\nrequest_id=x status=200", "/healthz\\nrequest_id=x status=200"),
        ("a\r\tb\x00", "a\\r\\tb\\x00"),
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
        ("\x9b31m\x7f", "\\x9b31m\\x7f"),  # C1 CSI and DEL
        ("line\u2028next\u202eevil", "line\\u2028next\\u202eevil"),
        ("¿Qué dosis? 💊 ok", "¿Qué dosis? 💊 ok"),
    ],
)
def test_printable_escapes_control_characters_only(text: str, expected: str) -> None:
    assert printable(text) == expected
