"""E-mail addresses and phone numbers are removed before text is stored; doses, years and crisis lines stay."""

from __future__ import annotations

import pytest

from bpd_rag.redact import redact


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
