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
