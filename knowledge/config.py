"""Knobs of the knowledge index, the retriever and the CKEPE chain (one validated schema).

Defaults suit a laptop: the bundled MiniLM encoder, an exact inner-product index, no LLM
(the offline composer writes the prompts). Every field is reachable from YAML or from
``--set key=value`` on the command line.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from merl.core.config import StrictModel


class IndexConfig(StrictModel):
    """FAISS index layout. ``flat`` is exact; ``hnsw``/``ivf`` trade recall for speed on large user corpora."""

    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=256, description="HNSW graph degree")
    hnsw_ef_search: int = Field(64, ge=8, description="HNSW search breadth")
    ivf_nlist: int = Field(256, ge=1, description="IVF coarse cells (capped at n_vectors / 39 when training)")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells visited per query")


class LLMConfig(StrictModel):
    """Chat model for the CKEPE chain; ``model: null`` means the deterministic offline composer."""

    model: Optional[str] = Field(None, description="openai:<model>, ollama:<model>, or <provider>:<model>")
    base_url: Optional[str] = Field(None, description="OpenAI-compatible or Ollama server URL")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(60.0, gt=0)
    structured_output: bool = Field(True, description="use the model's native structured output when it has one")


class KnowledgeConfig(StrictModel):
    embedding: str = Field("default", description="'default' (bundled MiniLM), a HF name/path, or openai:<model>")
    embedding_batch_size: int = Field(64, ge=1)
    embedding_max_length: int = Field(256, ge=16, le=512)
    index: IndexConfig = IndexConfig()
    k: int = Field(5, ge=1, description="passages returned per query")
    search: Literal["similarity", "mmr"] = "similarity"
    fetch_k: int = Field(20, ge=1, description="candidates fetched before MMR / metadata filtering")
    lambda_mult: float = Field(0.5, ge=0.0, le=1.0, description="MMR: 1 = pure relevance, 0 = pure diversity")
    lexical_weight: float = Field(
        0.4, ge=0.0, le=1.0, description="similarity search: weight of TF-IDF word overlap vs embedding cosine (0 = dense only)"
    )
    score_threshold: Optional[float] = Field(None, ge=-1.0, le=1.0, description="minimum cosine similarity")
    chunk_size: int = Field(800, ge=50, description="characters per user-document chunk")
    chunk_overlap: int = Field(120, ge=0)
    llm: LLMConfig = LLMConfig()
    grounding_threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="fraction of an attribute's content words that must occur in the passages"
    )
    max_attributes: int = Field(8, ge=1, description="attributes kept in one class prompt")

    @model_validator(mode="after")
    def _check(self) -> KnowledgeConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        return self
