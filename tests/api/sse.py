"""Reading server-sent events in tests."""

from __future__ import annotations

import re


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each event in an SSE body; comments (pings) are skipped."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        name, data = "message", []
        for line in re.split(r"\r\n|\r|\n", block):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events
