"""Ingest: incremental by content hash, atomic manifest swap, clear errors for missing or corrupt indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bpd_rag.embeddings import HashEmbedder
from bpd_rag.errors import IndexCorruptError, IndexMissingError
from bpd_rag.index import ingest
from bpd_rag.pipeline import Pipeline
from bpd_rag.store import MemoryStore
from tests.conftest import make_settings, write_doc


def _ingest(corpus: Path, store: MemoryStore):  # type: ignore[no-untyped-def]
    return ingest(corpus, store, HashEmbedder(), 96, 1)


def test_reingest_skips_unchanged_replaces_changed_removes_deleted(tmp_path: Path) -> None:
    write_doc(tmp_path, "a", "Ketamine was given as an infusion. " * 5)
    write_doc(tmp_path, "b", "Midazolam was the control. " * 5)
    store = MemoryStore()
    first = _ingest(tmp_path, store)
    assert sorted(first.added) == ["a", "b"] and first.chunks_written > 0
    n_chunks = len(store.all_chunks())

    again = _ingest(tmp_path, store)
    assert again.chunks_written == 0 and sorted(again.unchanged) == ["a", "b"]
    assert len(store.all_chunks()) == n_chunks  # no duplicates

    write_doc(tmp_path, "a", "Ketamine was given over forty minutes. " * 5)
    (tmp_path / "b.md").unlink()
    changed = _ingest(tmp_path, store)
    assert changed.updated == ["a"] and changed.removed == ["b"]
    texts = " ".join(c.text for c in store.all_chunks())
    assert "forty minutes" in texts and "as an infusion" not in texts and "Midazolam" not in texts


def test_interrupted_ingest_leaves_the_previous_index_usable(tmp_path: Path) -> None:
    write_doc(tmp_path, "a", "The first version says placebo. " * 5)
    write_doc(tmp_path, "b", "Another document about dosing. " * 5)
    store = MemoryStore()
    _ingest(tmp_path, store)
    before = store.read_manifest()

    write_doc(tmp_path, "a", "The second version says midazolam. " * 5)
    write_doc(tmp_path, "b", "Another document, changed too. " * 5)
    store.fail_after_chunks = 1  # the write "crashes" after its first chunk
    with pytest.raises(RuntimeError):
        _ingest(tmp_path, store)
    assert store.read_manifest() == before
    live = [c for c in store.all_chunks() if before is not None and before.is_live(c)]
    assert live and all("placebo" in c.text or "dosing" in c.text for c in live)

    store.fail_after_chunks = None
    _ingest(tmp_path, store)  # the next ingest finishes the job and clears the leftovers
    assert all("midazolam" in c.text or "changed too" in c.text for c in store.all_chunks())


def test_a_broken_file_keeps_its_previous_version(tmp_path: Path) -> None:
    path = write_doc(tmp_path, "a", "Ketamine text that was fine. " * 3)
    store = MemoryStore()
    _ingest(tmp_path, store)
    path.write_text("---\ntitle: [broken\n---\ntext", encoding="utf-8")
    report = _ingest(tmp_path, store)
    assert report.kept_previous == ["a"] and report.removed == []
    assert report.errors and "a.md" in report.errors[0].path
    assert store.all_chunks()


def test_missing_index_tells_the_user_to_ingest(tmp_path: Path, tmp_corpus: Path) -> None:
    pipeline = Pipeline(make_settings(tmp_path, tmp_corpus), HashEmbedder())
    with pytest.raises(IndexMissingError, match="bpd-rag ingest"):
        pipeline.ask("What dose was used?")


def test_corrupt_index_says_how_to_rebuild(tmp_path: Path, tmp_corpus: Path) -> None:
    settings = make_settings(tmp_path, tmp_corpus)
    Pipeline(settings, HashEmbedder()).ingest()
    for db in Path(settings.store.path).rglob("*.sqlite3"):
        db.write_bytes(b"this is not a database" * 100)
    with pytest.raises((IndexCorruptError, IndexMissingError), match="bpd-rag ingest"):
        Pipeline(settings, HashEmbedder()).ask("What dose was used?")
    rebuilt = Pipeline(settings, HashEmbedder())
    report = rebuilt.ingest(rebuild=True)
    assert report.chunks_total > 0
    assert rebuilt.ask("What dose of ketamine was given?").kind in {"answer", "no_answer"}


def test_rechunking_leaves_no_stale_chunks(tmp_path: Path) -> None:
    write_doc(tmp_path, "a", "Ketamine was given as an infusion over forty minutes in the trial. " * 12)
    store = MemoryStore()
    ingest(tmp_path, store, HashEmbedder(), 32, 0)
    small = len(store.all_chunks())
    report = ingest(tmp_path, store, HashEmbedder(), 128, 0)
    assert report.updated == ["a"]
    manifest = store.read_manifest()
    assert manifest is not None
    chunks = store.all_chunks()
    assert len(chunks) < small and all(manifest.is_live(c) for c in chunks)


def test_changing_the_embedder_reembeds_everything(tmp_path: Path, tmp_corpus: Path) -> None:
    settings = make_settings(tmp_path, tmp_corpus)
    Pipeline(settings, HashEmbedder(dimension=256)).ingest()
    report = Pipeline(settings, HashEmbedder(dimension=128)).ingest()
    assert report.unchanged == [] and report.chunks_written == report.chunks_total > 0


def test_one_bad_file_is_reported_and_everything_else_is_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdf
    from fpdf import FPDF
    from pypdf.errors import LimitReachedError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_doc(corpus, "a", "Ketamine was given as an infusion. " * 5)
    write_doc(corpus, "b", "Midazolam was the control. " * 5)
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "A handout whose streams pypdf refuses to inflate.")
    pdf.output(str(corpus / "bomb.pdf"))
    (corpus / "big.txt").write_text("Ketamine. " * 300, encoding="utf-8")  # 3,000 bytes
    outside = write_doc(tmp_path, "outside", "Text from elsewhere on disk. " * 5)
    try:
        (corpus / "linked.md").symlink_to(outside)
    except OSError as exc:
        pytest.skip(f"cannot make symbolic links here: {exc}")

    def reader(*args: object, **kwargs: object) -> None:
        raise LimitReachedError("Limit reached while decompressing.")

    monkeypatch.setattr(pypdf, "PdfReader", reader)
    store = MemoryStore()
    calls: list[tuple[int, int, str]] = []
    report = ingest(
        corpus, store, HashEmbedder(), 96, 1, progress=lambda *call: calls.append(call), max_file_bytes=2000
    )
    assert sorted(report.added) == ["a", "b"] and report.chunks_total > 0
    assert {c.doc_id for c in store.all_chunks()} == {"a", "b"}
    reasons = {Path(e.path).name: e.reason for e in report.errors}
    assert set(reasons) == {"bomb.pdf", "big.txt"}
    assert "BPD_RAG_INGEST__MAX_FILE_MB" in reasons["big.txt"]
    assert [w for w in report.warnings if "linked.md" in w and "symbolic link" in w]
    listed = report.as_dict()["errors"]  # what `bpd-rag ingest --json` prints
    assert isinstance(listed, list) and [e["path"] for e in listed] == [e.path for e in report.errors]
    # The progress bar of `bpd-rag ingest` still moves over the documents that were read, then finishes.
    assert [call[2] for call in calls[:-1]] == ["a", "b"] and calls[-1] == (2, 2, "")


def test_the_size_limit_setting_reaches_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_doc(corpus, "small", "Ketamine was given as an infusion. " * 5)
    (corpus / "big.txt").write_text("Ketamine. " * 300, encoding="utf-8")  # 3,000 bytes
    monkeypatch.setenv("BPD_RAG_INGEST__MAX_FILE_MB", "0.002")  # 2,097 bytes
    settings = make_settings(tmp_path, corpus)
    assert settings.ingest.max_file_mb == 0.002
    report = Pipeline(settings, HashEmbedder()).ingest()
    assert [Path(e.path).name for e in report.errors] == ["big.txt"]
    assert report.errors[0].reason == (
        "is 0.1 MB; the limit is 0.002 MB (BPD_RAG_INGEST__MAX_FILE_MB). Split it or raise the limit."
    )
    assert report.added == ["small"]
    monkeypatch.setenv("BPD_RAG_INGEST__MAX_FILE_MB", "1")
    report = Pipeline(make_settings(tmp_path, corpus), HashEmbedder()).ingest()
    assert report.errors == [] and "big" in report.added
