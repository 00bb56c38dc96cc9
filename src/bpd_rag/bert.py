"""A BERT sentence encoder (mean pooling, unit length) in plain PyTorch, for models laid out like MiniLM.

Importing sentence-transformers pulls in transformers, scikit-learn and SciPy: ~3.5 s of a 6 s cold start
on a 2-core machine, for a model whose forward pass is a few matrix products. This module reads the same
folder (tokenizer.json, model.safetensors, the pooling config) and computes the same vectors (within 1e-5,
tests/test_bert.py) with only torch, safetensors and tokenizers loaded. Folders it does not understand
(another architecture or pooling) are left to sentence-transformers by the caller.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class _Layout:
    """What the model folder says about the network (config.json and the sentence-transformers files)."""

    heads: int
    layers: int
    eps: float
    max_tokens: int
    normalize: bool


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_layout(folder: Path) -> _Layout | None:
    """The layout when the folder holds a plain BERT with mean pooling, else None (use sentence-transformers)."""
    modules = _read_json(folder / "modules.json")
    config = _read_json(folder / "config.json")
    if not isinstance(modules, list) or not isinstance(config, dict):
        return None
    types = [m.get("type") for m in modules]
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        return None
    pooling = _read_json(folder / modules[1].get("path", "") / "config.json") or {}
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    plain_bert = (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )
    files = all((folder / name).is_file() for name in ("tokenizer.json", "model.safetensors"))
    if modes != {"pooling_mode_mean_tokens"} or not plain_bert or not files:
        return None
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    limit = int(config.get("max_position_embeddings", 512))
    return _Layout(
        heads=int(config["num_attention_heads"]),
        layers=int(config["num_hidden_layers"]),
        eps=float(config.get("layer_norm_eps", 1e-12)),
        max_tokens=min(int(st_config.get("max_seq_length") or limit), limit),
        normalize=_NORMALIZE in types,
    )


class BertSentenceEncoder:
    """Texts -> sentence vectors, as sentence-transformers computes them for a BERT + mean pooling model."""

    def __init__(self, folder: Path, layout: _Layout) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.layout = layout
        self.max_tokens = layout.max_tokens
        weights = load_file(str(folder / "model.safetensors"))
        # Some checkpoints name their tensors "bert.embeddings...", others "embeddings...".
        self._w: dict[str, torch.Tensor] = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
        self.dimension = int(self._w["embeddings.word_embeddings.weight"].shape[1])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
        # Counting must see the whole text, so a second tokenizer without truncation or padding.
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()

    @classmethod
    def load(cls, folder: Path) -> BertSentenceEncoder | None:
        """The encoder for a supported folder, else None."""
        layout = read_layout(folder)
        return cls(folder, layout) if layout is not None else None

    def count_tokens(self, text: str) -> int:
        """Tokens of the text including [CLS] and [SEP], untruncated."""
        return len(self._counter.encode(text).ids)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """One row per text (float32); texts of similar length are batched together, as sentence-transformers does."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
                ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
                mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
                out[rows] = self._forward(ids, mask).numpy()
        return out

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        w, eps = self._w, self.layout.eps
        batch, length = ids.shape
        hidden = self.dimension
        heads = self.layout.heads
        head_dim = hidden // heads

        def norm(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.layer_norm(x, (hidden,), w[f"{name}.weight"], w[f"{name}.bias"], eps)

        def dense(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, heads, head_dim).transpose(1, 2)

        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = norm(x, "embeddings.LayerNorm")
        keys_allowed = mask[:, None, None, :].bool()  # padding is never attended to
        for i in range(self.layout.layers):
            p = f"encoder.layer.{i}"
            q = split(dense(x, f"{p}.attention.self.query"))
            k = split(dense(x, f"{p}.attention.self.key"))
            v = split(dense(x, f"{p}.attention.self.value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys_allowed, scale=1 / math.sqrt(head_dim))
            context = context.transpose(1, 2).reshape(batch, length, hidden)
            x = norm(dense(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            inner = F.gelu(dense(x, f"{p}.intermediate.dense"))
            x = norm(dense(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.layout.normalize else pooled
