"""The reviewable safety data (patterns and exemplars under data/safety/), loaded and checked at startup."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bpd_rag.errors import ConfigurationError

_FRAGMENT = re.compile(r"\{([A-Z_]+)\}")


def default_data_dir() -> Path:
    """The data/safety folder shipped inside the package."""
    return Path(str(resources.files("bpd_rag").joinpath("data", "safety")))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or a ConfigurationError that names the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"Safety data file {path} cannot be read ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"Safety data file {path} must be a YAML mapping.")
    return data


def expand(regex: str, fragments: Mapping[str, str], where: str) -> str:
    """Insert {NAME} fragments (which may use other fragments) into a regex."""
    for _ in range(5):  # fragments nest a few levels at most
        if not _FRAGMENT.search(regex):
            return regex

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in fragments:
                raise ConfigurationError(f"{where}: unknown fragment {{{name}}}")
            return fragments[name]

        regex = _FRAGMENT.sub(fill, regex)
    raise ConfigurationError(f"{where}: fragments nest too deeply")


def compile_regex(regex: str, where: str, flags: int = 0) -> re.Pattern[str]:
    """re.compile with an error that names the data file and pattern."""
    try:
        return re.compile(regex, flags)
    except re.error as exc:
        raise ConfigurationError(f"{where}: invalid regex ({exc})") from exc


@dataclass(frozen=True)
class Rule:
    """One pattern from a data file."""

    id: str
    category: str
    regex: re.Pattern[str]
    scope: str = "any"  # crisis: any | personal | third
    where: str = "both"  # injection: message | document | both
    raw: bool = False  # injection: match the text as written instead of the normalised text


def load_rules(path: Path, scopes: frozenset[str] = frozenset({"any"})) -> tuple[list[Rule], dict[str, Any]]:
    """The patterns of a YAML data file, compiled, and the file's other top-level entries."""
    data = read_yaml(path)
    fragments = {str(k): str(v) for k, v in (data.get("fragments") or {}).items()}
    rules: list[Rule] = []
    for item in data.get("patterns") or []:
        rule_id = str(item.get("id", "?"))
        where = f"{path.name} pattern {rule_id}"
        if "regex" not in item:
            raise ConfigurationError(f"{where}: no regex")
        scope = str(item.get("scope", "any"))
        if scope not in scopes:
            raise ConfigurationError(f"{where}: scope must be one of {sorted(scopes)}, not {scope!r}")
        raw = item.get("text", "normalised") == "raw"
        flags = re.IGNORECASE | re.MULTILINE if raw else 0
        rules.append(
            Rule(
                id=rule_id,
                category=str(item.get("category", rule_id)),
                regex=compile_regex(expand(str(item["regex"]), fragments, where), where, flags),
                scope=scope,
                where=str(item.get("where", "both")),
                raw=raw,
            )
        )
    if not rules:
        raise ConfigurationError(f"Safety data file {path} has no patterns.")
    extra = {k: v for k, v in data.items() if k not in ("fragments", "patterns")}
    extra["fragments"] = {
        name: compile_regex(expand(value, fragments, f"{path.name} fragment {name}"), f"{path.name} {name}")
        for name, value in fragments.items()
    }
    return rules, extra
