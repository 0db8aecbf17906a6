"""Text embeddings for the knowledge index, as a LangChain ``Embeddings``.

The default is the bundled all-MiniLM-L6-v2 (``merl.core.textmodel``), run locally with
transformers: mean pooling over the attention mask, then L2 normalisation, so inner
product equals cosine similarity. Any other Hugging Face model works by name or path.
``openai:<model>`` / ``ollama:<model>`` select API embeddings when their integration
package is installed (a clear error otherwise).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from langchain_core.embeddings import Embeddings

from merl.core.config import ConfigError

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[Any, Any]:
    """Tokenizer and model, loaded once per process (the CLI and tests reuse them)."""
    from transformers import AutoModel, AutoTokenizer

    log.info("loading text encoder %s", path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


class HFEmbeddings(Embeddings):
    """Mean-pooled, L2-normalised sentence embeddings from a local transformers encoder."""

    def __init__(self, model: str = "default", batch_size: int = 64, max_length: int = 256):
        from merl.core.textmodel import resolve_text_model

        self.spec = model
        self.path = resolve_text_model(None if model == "default" else model)
        self.batch_size = batch_size
        self.max_length = max_length

    @property
    def name(self) -> str:
        return self.spec

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import torch

        try:
            tok, model = _load(self.path)
        except OSError as e:
            raise ConfigError(f"embedding model {self.spec!r} could not be loaded (offline?): {e}") from None
        # Batches of similar length waste little compute on padding (many short passages).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                idx = order[i : i + self.batch_size]
                batch = tok(
                    [texts[j] for j in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                for j, row in zip(idx, pooled.float().tolist()):
                    out[j] = row
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


def _api_embeddings(provider: str, model: str) -> Embeddings:
    if provider == "openai":
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError:
            raise ConfigError(
                "embedding 'openai:...' needs the langchain-openai package: pip install 'merl-ray[llm]'"
            ) from None
        return OpenAIEmbeddings(model=model)
    if provider == "ollama":
        try:
            from langchain_ollama import OllamaEmbeddings
        except ImportError:
            raise ConfigError(
                "embedding 'ollama:...' needs the langchain-ollama package: pip install 'merl-ray[llm]'"
            ) from None
        return OllamaEmbeddings(model=model)
    raise ConfigError(
        f"unknown embedding provider {provider!r}; use 'default', a HF model name/path, openai:<model> or ollama:<model>"
    )


def make_embeddings(spec: str = "default", batch_size: int = 64, max_length: int = 256) -> Embeddings:
    """Embeddings from a config string (see module docstring)."""
    provider, sep, model = spec.partition(":")
    if sep and provider in ("openai", "ollama"):
        return _api_embeddings(provider, model)
    return HFEmbeddings(spec, batch_size=batch_size, max_length=max_length)
