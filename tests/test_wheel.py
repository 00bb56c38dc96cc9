"""The package as a user installs it: a built wheel, installed into a folder of its own, run from outside the
repository, finds its prompts and data through importlib.resources and answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT

pytestmark = pytest.mark.real_model

# Runs the installed package's command line with only the install folder in front of the dependencies:
# the checkout's src/ (on sys.path through the editable install) comes after it and is never imported.
RUN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import bpd_rag, bpd_rag.cli; "
    "assert bpd_rag.__file__.startswith(sys.path[0]), bpd_rag.__file__; bpd_rag.cli.main()"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from this checkout, installed (without dependencies) into a target folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    # Build from a copy: building in the checkout would leave build/ and egg-info folders behind.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", ".bpd_rag", "eval", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(work)], check=True)
    (wheel,) = work.glob("bpd_rag-*.whl")
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    yield target


def bpd_rag(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BPD_RAG_CORPUS_DIR": str(cwd / "corpus"),
        "BPD_RAG_STORE__PATH": str(cwd / "index"),
        "BPD_RAG_API__FEEDBACK_DB": str(cwd / "feedback.sqlite3"),
    }
    env.pop("BPD_RAG_PROMPTS_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", RUN, str(target), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_installed_wheel_ingests_and_answers_from_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    assert (installed / "bpd_rag" / "data" / "prompts" / "crisis" / "US.yaml").is_file()
    assert not (installed / "prompts").exists()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "pip-pilot-rct-blog.md", corpus)
    shutil.copy(CORPUS / "expio-pilot-rct-summary.md", corpus)

    ingest = bpd_rag(installed, tmp_path, "ingest", "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert len(json.loads(ingest.stdout)["added"]) == 2

    crisis = bpd_rag(installed, tmp_path, "ask", "--json", "i want to end my life tonight")
    assert crisis.returncode == 0, crisis.stderr
    reply = json.loads(crisis.stdout)
    assert reply["kind"] == "crisis" and any(r["call"] == "988" for r in reply["resources"])

    question = bpd_rag(installed, tmp_path, "ask", "--json", "What dose of ketamine was used in the pilot trial?")
    assert question.returncode == 0, question.stderr
    answer = json.loads(question.stdout)
    assert answer["kind"] == "answer" and answer["citations"] and answer["disclaimer"]
