"""Corpus files -> Documents: Markdown with front matter, plain text, HTML (main text) and PDF."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bpd_rag.errors import CorpusFileError
from bpd_rag.evidence import read_evidence
from bpd_rag.types import Document

SUPPORTED_SUFFIXES = (".md", ".txt", ".html", ".htm", ".pdf")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n?", re.DOTALL)
_FIELDS = ("title", "source_type", "publisher", "author", "published", "url")
# The default of settings.ingest.max_file_mb, for callers that load the corpus without settings.
DEFAULT_MAX_FILE_BYTES = 10 * 2**20


@dataclass
class CorpusLoad:
    """The documents read from a folder, the files that could not be read (each with why), and warnings."""

    documents: list[Document] = field(default_factory=list)
    errors: list[CorpusFileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def clean_text(text: str) -> str:
    """Normalise line ends and blank runs; strip trailing spaces. Wording is never changed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _title_from_stem(stem: str) -> str:
    return stem.replace("-", " ").replace("_", " ").strip().capitalize()


# libyaml's loader when PyYAML was built with it (the same safe subset, ~10x faster on 2,000 front matters).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_markdown(path: Path) -> tuple[dict[str, Any], str]:
    raw = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(raw)
    if not match:
        return {}, raw
    try:
        meta = yaml.load(match.group(1), Loader=YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise CorpusFileError(str(path), f"front matter is not valid YAML ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise CorpusFileError(str(path), "front matter must be a YAML mapping of key: value lines")
    return meta, raw[match.end() :]


def _read_text(path: Path) -> tuple[dict[str, Any], str]:
    return {}, path.read_text(encoding="utf-8")


def _read_html(path: Path) -> tuple[dict[str, Any], str]:
    import trafilatura

    html = path.read_text(encoding="utf-8", errors="replace")
    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=True)
    meta_doc = trafilatura.extract_metadata(html)
    meta: dict[str, Any] = {}
    if meta_doc is not None:
        for key in ("title", "author", "url"):
            value = getattr(meta_doc, key, None)
            if value:
                meta[key] = value
        if getattr(meta_doc, "date", None):
            meta["published"] = meta_doc.date
        if getattr(meta_doc, "sitename", None):
            meta["publisher"] = meta_doc.sitename
    return meta, text or ""


def _read_pdf(path: Path) -> tuple[dict[str, Any], str]:
    import pypdf
    from pypdf.errors import LimitReachedError

    meta: dict[str, Any] = {}
    try:
        reader = pypdf.PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        if info is not None:
            if info.title:
                meta["title"] = str(info.title)
            if info.author:
                meta["author"] = str(info.author)
    except LimitReachedError as exc:
        raise CorpusFileError(
            str(path),
            f"is over a safety limit of the PDF reader ({exc}): its compressed data or page tree is too large or "
            "malformed. Save its text as a .txt file (or print it to a new, smaller PDF) and put that in the corpus "
            "folder instead.",
        ) from exc
    except OSError:
        raise  # load_document reports it as a file that cannot be read
    # pypdf raises many types besides PdfReadError on malformed files (AttributeError, IndexError, struct.error,
    # RecursionError, ...); one bad PDF must be reported for itself, never abort the ingest of the others.
    except Exception as exc:
        raise CorpusFileError(
            str(path),
            f"not a readable PDF ({exc.__class__.__name__}: {exc}); re-save it with a PDF tool, or save its text as "
            "a .txt file.",
        ) from exc
    return meta, "\n\n".join(pages)


_READERS: dict[str, Callable[[Path], tuple[dict[str, Any], str]]] = {
    ".md": _read_markdown,
    ".txt": _read_text,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
}


def _as_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def load_document(path: Path) -> Document:
    """Read one corpus file; raises CorpusFileError saying what is wrong with it."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise CorpusFileError(str(path), f"unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        meta, body = reader(path)
    except UnicodeDecodeError as exc:
        raise CorpusFileError(
            str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise CorpusFileError(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    text = clean_text(body)
    if not text:
        raise CorpusFileError(str(path), "has no text (empty file, or nothing could be extracted)")
    values = {key: _as_text(meta.get(key)) for key in _FIELDS}
    if values["title"] is None and path.suffix.lower() == ".txt":
        first_line = text.split("\n", 1)[0].strip()
        values["title"] = first_line if len(first_line) <= 200 else None
    title = values["title"] or _title_from_stem(path.stem)
    evidence, evidence_spans = read_evidence(meta.get("evidence"), text, str(path))
    digest = hashlib.sha256()
    digest.update(repr(sorted((k, v) for k, v in values.items() if v)).encode())
    digest.update(text.encode())
    return Document(
        doc_id=path.stem,
        title=title,
        text=text,
        source_type=values["source_type"] or "unknown",
        publisher=values["publisher"],
        author=values["author"],
        published=values["published"],
        url=values["url"],
        path=str(path),
        content_hash=digest.hexdigest(),
        evidence=evidence,
        evidence_spans=evidence_spans,
    )


def scan_corpus(corpus_dir: Path) -> tuple[list[Path], list[str]]:
    """The corpus files of a folder, sorted, and a warning for each symbolic link left out.

    Links are not followed, to files or to folders: a corpus folder must not pull in files from elsewhere on disk.
    Hidden files and other types are left out silently.
    """
    files: list[Path] = []
    warnings: list[str] = []
    for path in sorted(Path(corpus_dir).iterdir()):
        if path.name.startswith("."):
            continue
        supported = path.suffix.lower() in SUPPORTED_SUFFIXES
        if path.is_symlink():
            if supported or path.is_dir():
                warnings.append(
                    f"{path}: is a symbolic link and was skipped (links in the corpus folder are not followed); "
                    "copy the file into the folder instead."
                )
        elif supported and path.is_file():
            files.append(path)
    return files, warnings


def _megabytes(n_bytes: int) -> str:
    # Rounded up: a file just over the limit must not read as "10.0 MB; the limit is 10 MB".
    return f"{math.ceil(n_bytes * 10 / 2**20) / 10:.1f}"


def _check_size(path: Path, max_file_bytes: int | None) -> None:
    """Raise CorpusFileError for a file over the limit, by its size on disk (nothing is read)."""
    if max_file_bytes is None:
        return
    try:
        size = path.lstat().st_size
    except OSError as exc:
        raise CorpusFileError(str(path), f"cannot be read ({exc.strerror or exc})") from exc
    if size > max_file_bytes:
        raise CorpusFileError(
            str(path),
            f"is {_megabytes(size)} MB; the limit is {round(max_file_bytes / 2**20, 3):g} MB "
            "(BPD_RAG_INGEST__MAX_FILE_MB). Split it or raise the limit.",
        )


def load_corpus(corpus_dir: Path, max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> CorpusLoad:
    """Read every corpus file; a broken or too large file is recorded in errors and skipped, never fatal.

    max_file_bytes=None reads files of any size.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusFileError(str(corpus_dir), "corpus folder not found; set BPD_RAG_CORPUS_DIR or create it")
    files, warnings = scan_corpus(corpus_dir)
    result = CorpusLoad(warnings=warnings)
    seen: dict[str, Path] = {}
    for path in files:
        try:
            _check_size(path, max_file_bytes)
            document = load_document(path)
        except CorpusFileError as exc:
            result.errors.append(exc)
            continue
        if document.doc_id in seen:
            result.errors.append(
                CorpusFileError(
                    str(path), f"has the same document id as {seen[document.doc_id].name}; rename one of them"
                )
            )
            continue
        seen[document.doc_id] = path
        result.documents.append(document)
    return result


ERRATA_FILE = "errata.yaml"


@dataclass(frozen=True)
class Erratum:
    """A known error in a source: sentences of doc_id that contain text are never quoted."""

    doc_id: str
    text: str
    note: str = ""

    def applies(self, doc_id: str, sentence: str) -> bool:
        return doc_id == self.doc_id and self.text in sentence


def in_errata(errata: Sequence[Erratum], doc_id: str, sentence: str) -> bool:
    """Whether a sentence of doc_id holds a known error of its source (so it is never quoted)."""
    return any(e.applies(doc_id, sentence) for e in errata)


def load_errata(corpus_dir: Path) -> list[Erratum]:
    """The reviewed list of source errors in corpus_dir/errata.yaml (none when the file is absent)."""
    path = Path(corpus_dir) / ERRATA_FILE
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        return [Erratum(doc_id=str(e["doc_id"]), text=str(e["text"]), note=str(e.get("note", ""))) for e in data]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise CorpusFileError(
            str(path), f"must be a YAML list of entries with doc_id, text and note ({exc.__class__.__name__}: {exc})"
        ) from exc
