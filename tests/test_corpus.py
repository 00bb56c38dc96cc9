"""Corpus files -> Documents: front matter, cleaning, other formats, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bpd_rag.corpus import load_corpus, load_document
from bpd_rag.errors import CorpusFileError
from tests.conftest import CORPUS, ROOT, write_doc

DOC_IDS = {
    "ketamine-bpd-promising-path",
    "expio-pilot-rct-summary",
    "ketamine-bpd-pros-cons",
    "psypost-trd-bpd-2023",
    "pip-pilot-rct-blog",
}
SOURCES = ROOT.parent / "shared" / "corpus-sources"


def test_curated_corpus_keeps_the_source_ids_and_front_matter() -> None:
    loaded = load_corpus(CORPUS)
    assert loaded.errors == []
    docs = {d.doc_id: d for d in loaded.documents}
    assert set(docs) == DOC_IDS
    for doc in docs.values():
        assert doc.title and doc.source_type in {"clinic_blog", "news", "trial_summary", "trial_report"}
        assert doc.url is None  # none of the sources states its own URL
    assert docs["psypost-trd-bpd-2023"].author == "Eric W. Dolan"
    assert docs["psypost-trd-bpd-2023"].published == "2023-04-19"
    assert docs["psypost-trd-bpd-2023"].source_type == "news"
    assert docs["pip-pilot-rct-blog"].publisher == "Philadelphia Integrative Psychiatry"


@pytest.mark.parametrize(
    "clutter",
    [
        "salt",
        "measles",
        "incels",
        "Forgotten Password",
        "Login",
        "Subscribe",
        "youtube.com",
        "Share on",
        "Related publications",
        "Previous Post",
        "Next Post",
        "My Account",
        "View All Result",
        "Edit Template",
        "lying flat",
        "synesthesia",
        "Leave a reply",
        "Back to Blog",
    ],
)
def test_page_clutter_is_gone(clutter: str) -> None:
    for doc in load_corpus(CORPUS).documents:
        assert clutter.lower() not in doc.text.lower(), f"{clutter!r} left in {doc.doc_id}"


@pytest.mark.skipif(not SOURCES.is_dir(), reason="shared/corpus-sources is not beside the repo")
def test_curated_bodies_are_verbatim_source_text() -> None:
    """Every paragraph of a curated document stands in its source file (white space aside)."""
    for doc in load_corpus(CORPUS).documents:
        source = " ".join((SOURCES / f"{doc.doc_id}.txt").read_text(encoding="utf-8").split())
        for line in doc.text.splitlines():
            plain = " ".join(line.lstrip("#- ").split())
            assert plain in source, f"{doc.doc_id}: not verbatim: {plain[:80]!r}"


def test_front_matter_is_valid_yaml_with_required_keys() -> None:
    for path in CORPUS.glob("*.md"):
        head = path.read_text(encoding="utf-8").split("---")[1]
        meta = yaml.safe_load(head)
        assert {"title", "source_type"} <= set(meta), path.name


def test_txt_html_and_pdf_documents_are_read(tmp_path: Path) -> None:
    (tmp_path / "leaflet.txt").write_text(
        "Ketamine clinic leaflet\n\nInfusions last forty minutes.\n", encoding="utf-8"
    )
    (tmp_path / "page.html").write_text(
        "<html><head><title>Clinic page</title></head><body>"
        "<nav><a href='/'>Home</a> | <a>Salt and depression</a></nav>"
        "<article><h1>Clinic page</h1><p>Ketamine infusions are given in the clinic under supervision by "
        "trained staff. "
        "Each session is followed by a rest period before going home, and patients should not drive that day.</p>"
        "<p>The team reviews every patient's medical history before the first infusion is planned.</p></article>"
        "<footer>Subscribe to our newsletter</footer></body></html>",
        encoding="utf-8",
    )
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "Patient handout. Ketamine is given as an infusion in the clinic.")
    pdf.output(str(tmp_path / "handout.pdf"))

    docs = {d.doc_id: d for d in load_corpus(tmp_path).documents}
    assert docs["leaflet"].title == "Ketamine clinic leaflet"
    assert "forty minutes" in docs["leaflet"].text
    assert "under supervision" in docs["page"].text
    assert "Salt and depression" not in docs["page"].text and "Subscribe" not in docs["page"].text
    assert "given as an infusion" in docs["handout"].text


def test_broken_files_are_reported_by_name_and_skipped(tmp_path: Path) -> None:
    write_doc(tmp_path, "good", "Ketamine was given intravenously.")
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    (tmp_path / "badyaml.md").write_text("---\ntitle: [unclosed\n---\nBody text here.\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 ketamine text".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    loaded = load_corpus(tmp_path)
    assert [d.doc_id for d in loaded.documents] == ["good"]
    reasons = {Path(e.path).name: e.reason for e in loaded.errors}
    assert set(reasons) == {"empty.md", "badyaml.md", "latin1.txt", "broken.pdf"}
    assert "no text" in reasons["empty.md"]
    assert "YAML" in reasons["badyaml.md"]
    assert "UTF-8" in reasons["latin1.txt"]


def test_unsupported_type_and_missing_folder_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with pytest.raises(CorpusFileError, match="unsupported file type"):
        load_document(tmp_path / "notes.docx")
    with pytest.raises(CorpusFileError, match="BPD_RAG_CORPUS_DIR"):
        load_corpus(tmp_path / "nope")


def test_content_hash_changes_with_text_or_metadata(tmp_path: Path) -> None:
    path = write_doc(tmp_path, "d", "One sentence.")
    first = load_document(path).content_hash
    assert load_document(path).content_hash == first
    write_doc(tmp_path, "d", "One sentence.", title="Another title")
    assert load_document(path).content_hash != first


def test_errata_are_read_and_checked(tmp_path: Path) -> None:
    from bpd_rag.corpus import load_errata

    assert load_errata(tmp_path) == []
    (tmp_path / "errata.yaml").write_text('- doc_id: a\n  text: "wrong claim"\n  note: why\n', encoding="utf-8")
    (erratum,) = load_errata(tmp_path)
    assert erratum.applies("a", "This is a wrong claim here.") and not erratum.applies("b", "a wrong claim")
    (tmp_path / "errata.yaml").write_text("- text: missing doc id\n", encoding="utf-8")
    with pytest.raises(CorpusFileError, match="doc_id, text and note"):
        load_errata(tmp_path)
    assert load_corpus(CORPUS).errors == []  # errata.yaml beside the documents is not read as a document


def _write_pdf(path: Path, text: str) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


def test_a_pdf_over_the_reader_limit_is_reported_and_the_rest_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypdf
    from pypdf.errors import LimitReachedError

    write_doc(tmp_path, "good", "Ketamine was given intravenously.")
    _write_pdf(tmp_path / "handout.pdf", "Patient handout. Ketamine is given as an infusion in the clinic.")
    _write_pdf(tmp_path / "bomb.pdf", "Pretend this stream inflates to gigabytes.")
    _write_pdf(tmp_path / "odd.pdf", "Pretend pypdf trips over this file.")
    real_reader = pypdf.PdfReader

    def reader(stream: str, *args: object, **kwargs: object) -> pypdf.PdfReader:
        # What pypdf raises for a decompression bomb, and an error type it was never expected to raise.
        if Path(stream).name == "bomb.pdf":
            raise LimitReachedError("Limit reached while decompressing.")
        if Path(stream).name == "odd.pdf":
            raise AttributeError("'NullObject' object has no attribute 'get_object'")
        return real_reader(stream, *args, **kwargs)  # type: ignore[arg-type]  # the real reader checks them

    monkeypatch.setattr(pypdf, "PdfReader", reader)
    loaded = load_corpus(tmp_path)
    assert sorted(d.doc_id for d in loaded.documents) == ["good", "handout"]
    reasons = {Path(e.path).name: e.reason for e in loaded.errors}
    assert set(reasons) == {"bomb.pdf", "odd.pdf"}
    assert "limit" in reasons["bomb.pdf"] and "decompressing" in reasons["bomb.pdf"]
    assert ".txt" in reasons["bomb.pdf"]  # says how to get the text in anyway
    assert "not a readable PDF" in reasons["odd.pdf"] and "AttributeError" in reasons["odd.pdf"]


def test_a_file_over_the_size_limit_is_skipped_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bpd_rag.corpus as corpus

    write_doc(tmp_path, "good", "Ketamine was given intravenously.")
    with (tmp_path / "huge.txt").open("wb") as big:
        big.truncate(20 * 2**20)  # a sparse 20 MB file: instant to make, and it would load as a document if read
    read: list[str] = []
    real_read_text = corpus._READERS[".txt"]

    def read_text(path: Path) -> tuple[dict[str, object], str]:
        read.append(path.name)
        return real_read_text(path)

    monkeypatch.setitem(corpus._READERS, ".txt", read_text)
    loaded = load_corpus(tmp_path, max_file_bytes=10 * 2**20)
    assert [d.doc_id for d in loaded.documents] == ["good"]
    (error,) = loaded.errors
    assert Path(error.path).name == "huge.txt"
    assert error.reason == (
        "is 20.0 MB; the limit is 10 MB (BPD_RAG_INGEST__MAX_FILE_MB). Split it or raise the limit."
    )
    assert read == []
    # The default applies without an argument; a raised limit (or none) reads the file.
    assert [Path(e.path).name for e in load_corpus(tmp_path).errors] == ["huge.txt"]
    assert load_corpus(tmp_path, max_file_bytes=None).errors == [] and read == ["huge.txt"]


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    corpus.mkdir()
    outside.mkdir()
    write_doc(corpus, "good", "Ketamine was given intravenously.")
    secret = write_doc(outside, "secret", "Private notes that live outside the corpus.")
    try:
        (corpus / "linked.md").symlink_to(secret)
        (corpus / "folder").symlink_to(outside, target_is_directory=True)
        (corpus / "dangling.md").symlink_to(outside / "gone.md")
    except OSError as exc:  # e.g. Windows without the symlink privilege
        pytest.skip(f"cannot make symbolic links here: {exc}")
    loaded = load_corpus(corpus)
    assert [d.doc_id for d in loaded.documents] == ["good"]
    assert all("Private notes" not in d.text for d in loaded.documents)
    assert loaded.errors == []
    assert len(loaded.warnings) == 3
    for name in ("linked.md", "folder", "dangling.md"):
        (warning,) = [w for w in loaded.warnings if f"{name}:" in w]
        assert "symbolic link" in warning and "not followed" in warning
