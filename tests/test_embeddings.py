"""The embedders: the plain-PyTorch MiniLM against sentence-transformers, query vectors kept, one model run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bpd_rag.bert import BertSentenceEncoder, read_layout
from bpd_rag.embeddings import SentenceTransformerEmbedder, default_model_path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"

# Short and long, accents, other scripts, whitespace only, more tokens than the model's window.
ODD_TEXTS = [
    "hi",
    "What dose of ketamine was used in the pilot trial?",
    "Café naïve résumé ÉCOLE",
    "   ",
    "kms lol",
    "中文 test ñ",
    "word " * 400,
]


@pytest.fixture(scope="module")
def library_model():  # type: ignore[no-untyped-def]  # sentence_transformers ships no type hints
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)


@pytest.mark.real_model
def test_plain_pytorch_vectors_match_sentence_transformers(library_model) -> None:  # type: ignore[no-untyped-def]
    encoder = BertSentenceEncoder.load(default_model_path())
    assert encoder is not None, "the packaged MiniLM folder should be read by bpd_rag.bert"
    texts = [p for f in sorted(CORPUS.glob("*.md")) for p in f.read_text().split("\n\n") if p.strip()][:150]
    texts += ODD_TEXTS
    ours = encoder.encode(texts, batch_size=16)
    theirs = library_model.encode(texts, batch_size=16, normalize_embeddings=True, show_progress_bar=False)
    assert ours.shape == theirs.shape == (len(texts), 384)
    assert float(np.abs(ours - theirs).max()) < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.real_model
def test_token_counts_match_the_library_tokenizer(library_model) -> None:  # type: ignore[no-untyped-def]
    encoder = BertSentenceEncoder.load(default_model_path())
    assert encoder is not None
    for text in ODD_TEXTS:
        assert encoder.count_tokens(text) == len(library_model.tokenizer(text, add_special_tokens=True)["input_ids"])
    assert encoder.count_tokens("word " * 400) == 402  # counting is never truncated


def test_folders_of_other_models_are_left_to_sentence_transformers(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(default_model_path(), folder)
    assert read_layout(folder) is not None
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    assert read_layout(folder) is None
    pooling.write_text(json.dumps(config))
    model_config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**model_config, "model_type": "roberta"}))
    assert read_layout(folder) is None


@pytest.mark.real_model
def test_a_model_folder_bert_py_does_not_read_loads_through_sentence_transformers(tmp_path: Path) -> None:
    folder = tmp_path / "cls-pooling"
    shutil.copytree(default_model_path(), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    library = SentenceTransformerEmbedder(folder)
    packaged = SentenceTransformerEmbedder()
    assert not isinstance(library._encoder, BertSentenceEncoder)
    assert isinstance(packaged._encoder, BertSentenceEncoder)
    text = "What dose of ketamine was used in the pilot trial?"
    cls_vector, mean_vector = np.array(library.embed_query(text)), np.array(packaged.embed_query(text))
    assert library.dimension == 384 and abs(float(np.linalg.norm(cls_vector)) - 1.0) < 1e-5
    assert float(cls_vector @ mean_vector) < 0.99  # the folder's own pooling was used
    assert library.count_tokens(text) == packaged.count_tokens(text)


class _CountingEncoder:
    """Stands in for the model: counts runs and records what each run received."""

    dimension = 3
    max_tokens = 256

    def __init__(self) -> None:
        self.runs: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        self.runs.append(list(texts))
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _counting_embedder() -> tuple[SentenceTransformerEmbedder, _CountingEncoder]:
    fake = _CountingEncoder()
    return SentenceTransformerEmbedder(encoder=fake), fake


def test_recent_texts_are_embedded_once_whether_as_documents_or_queries() -> None:
    embedder, model = _counting_embedder()
    vectors = embedder.embed_documents(["a crisis check sentence", "the message"])
    assert len(vectors) == 2 and vectors[0][0] == len("a crisis check sentence")
    assert model.runs == [["a crisis check sentence", "the message"]]
    # The model is symmetric: retrieval's query vector of the same text is the one already computed.
    assert embedder.embed_query("the message")[0] == len("the message")
    assert len(model.runs) == 1
    embedder.embed_documents(["another sentence", "the message"])
    assert model.runs[-1] == ["another sentence"]  # only what is new goes to the model
