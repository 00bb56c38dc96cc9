"""Load the texts the bot says on its own from prompts/, checking each template's variables on load."""

from __future__ import annotations

import string
from pathlib import Path

from bpd_rag.errors import ConfigurationError


def template_variables(template: str) -> set[str]:
    """The {names} a str.format template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def load_prompt(prompts_dir: Path, name: str, variables: frozenset[str] = frozenset()) -> str:
    """Read prompts/<name>; its {variables} must be exactly the expected ones."""
    path = Path(prompts_dir) / name
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"Prompt file {path} cannot be read ({exc}). Set BPD_RAG_PROMPTS_DIR to the prompts/ folder."
        ) from exc
    found = template_variables(text)
    if found != set(variables):
        raise ConfigurationError(
            f"Prompt {path} uses variables {sorted(found)} but {sorted(variables)} are expected. Fix the template."
        )
    return text
