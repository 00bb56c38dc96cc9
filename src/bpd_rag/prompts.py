"""Load the texts the bot says on its own (shipped in the package under data/prompts/, overridable with
BPD_RAG_PROMPTS_DIR), checking templates' variables and the crisis resources when they load."""

from __future__ import annotations

import re
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bpd_rag.errors import ConfigurationError
from bpd_rag.types import Resource

_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
# A number as dialled: digits with optional +, spaces and hyphens ("988", "1-800-222-1222", "116 123").
_PHONE = re.compile(r"\+?\d[\d -]{0,18}\d|\d")


def default_prompts_dir() -> Path:
    """The prompts shipped inside the package (found through importlib.resources, from any folder)."""
    return Path(str(resources.files("bpd_rag").joinpath("data", "prompts")))


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
            f"Prompt file {path} cannot be read ({exc}). Set BPD_RAG_PROMPTS_DIR to a folder of prompts, "
            "or unset it to use the ones shipped with bpd-rag."
        ) from exc
    found = template_variables(text)
    if found != set(variables):
        raise ConfigurationError(
            f"Prompt {path} uses variables {sorted(found)} but {sorted(variables)} are expected. Fix the template."
        )
    return text


def load_yaml(prompts_dir: Path, name: str) -> dict[str, Any]:
    """A YAML mapping from the prompts folder, or a ConfigurationError naming the file."""
    path = Path(prompts_dir) / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"Prompt file {path} cannot be read ({exc}).") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"Prompt file {path} is not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"Prompt file {path} must be a YAML mapping.")
    return data


class _Checked(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckedResource(Resource):
    """A resource whose numbers and link are checked when the file loads."""

    @field_validator("call", "sms")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a phone number (digits, optionally with +, spaces and hyphens)")
        return value.strip() if value else value

    @field_validator("sms_body")
    @classmethod
    def _keyword(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{1,20}", value):
            raise ValueError(f"{value!r} is not a single word to text")
        return value

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"{value!r} is not an https URL")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> CheckedResource:
        if not (self.call or self.sms or self.url):
            raise ValueError(f"resource {self.label!r} has no number to call or text and no URL")
        if self.sms_body and not self.sms:
            raise ValueError(f"resource {self.label!r} has a word to text but no number to text it to")
        return self


class CrisisLanguage(_Checked):
    """What the bot says about risk in one language, and the resources it shows."""

    heading: str = Field(description="Heading of the crisis reply in the widget.")
    message: str = Field(description="The crisis reply, before the resources.")
    closing: str = Field(description="The crisis reply, after the resources.")
    overdose_message: str = Field(description="Crisis reply for an overdose or poisoning, before the resources.")
    lethal_means: str = Field(description="Said when a message asks for lethal amounts, combinations or means.")
    check_in: str = Field(description="Short, warm check-in before an ordinary reply to a message with a risk signal.")
    greeting_check_in: str = Field(
        default="",
        description="Reply to a greeting, thanks or goodbye that still carries a risk signal: says what the bot is "
        "for and offers the resources, without reading distress into it; empty uses `distress`.",
    )
    distress: str = Field(description="Reply to distress without stated risk: validates, suggests the clinician.")
    footer: str = Field(description="One line under answers on risk topics (the resources' links go with it).")
    support_heading: str = Field(description="Heading of the resources shown beside an answer.")
    no_answer: str = Field(
        default="",
        description="For a language other than English: said when nothing was found (the sources are in "
        "English, so a question in this language often finds nothing); empty uses prompts/no_answer.txt.",
    )
    english_answer: str = Field(
        default="",
        description="For a language other than English: said before an answer in English (a reviewed card "
        "found for a question in this language); empty says nothing before it.",
    )
    refusal_advice: str = Field(
        default="",
        description="For a language other than English: the kind refusal of personal advice; empty uses "
        "prompts/refusal_advice.txt.",
    )
    refusal_general: str = Field(
        default="",
        description="For a language other than English: said before what the sources say in general, beside a "
        "refusal (the quotes stay in English); empty uses prompts/refusal_general.txt.",
    )
    resources: list[CheckedResource] = Field(min_length=1)
    poison: list[CheckedResource] = Field(min_length=1, description="Shown first for an overdose or poisoning.")


class CrisisTexts(_Checked):
    """prompts/crisis/<locale>.yaml: the crisis texts per language (English required)."""

    locale: str
    languages: dict[str, CrisisLanguage]
    other_languages: dict[str, str] = Field(
        default_factory=dict,
        description="For languages without a crisis text of their own: a note in that language that the bot "
        "answers in English, shown before the English crisis reply.",
    )

    @model_validator(mode="after")
    def _english(self) -> CrisisTexts:
        if "en" not in self.languages:
            raise ValueError("the crisis texts need an 'en' section")
        return self

    def language(self, code: str) -> CrisisLanguage:
        """The texts in that language, or in English when there are none."""
        return self.languages.get(code) or self.languages["en"]


@lru_cache(maxsize=16)
def load_crisis_texts(prompts_dir: Path, locale: str) -> CrisisTexts:
    """prompts/crisis/<locale>.yaml, validated (numbers, keywords, links) when it loads."""
    if not _LOCALE.fullmatch(locale):
        raise ConfigurationError(
            f"Safety locale {locale!r} is not a locale code. Set BPD_RAG_SAFETY__LOCALE to e.g. US."
        )
    name = f"crisis/{locale}.yaml"
    if not (Path(prompts_dir) / name).is_file():
        raise ConfigurationError(
            f"No crisis resources for locale {locale!r}: add {Path(prompts_dir) / name} "
            "or set BPD_RAG_SAFETY__LOCALE to a locale that has one (e.g. US)."
        )
    try:
        return CrisisTexts.model_validate(load_yaml(prompts_dir, name))
    except ValidationError as exc:
        raise ConfigurationError(f"{Path(prompts_dir) / name} is not valid: {exc}") from exc


@lru_cache(maxsize=4)
def load_widget_texts(prompts_dir: Path) -> dict[str, Any]:
    """prompts/widget.yaml: every fixed text the widget shows."""
    data = load_yaml(prompts_dir, "widget.yaml")
    for key, value in data.items():
        if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigurationError(f"{Path(prompts_dir) / 'widget.yaml'}: {key} must be a text or a list of texts")
    return data
