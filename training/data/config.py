"""What the data layer needs to know: where shards are, and how signals and reports become tensors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from merl.core.config import StrictModel


class DataConfig(StrictModel):
    train_shards: str = Field("data/shards", description="shard folder with manifest.json (local path or URI, e.g. s3://bucket/shards)")
    train_split: str = "train"
    val_split: str = Field("val", description="manifest split used for validation ('' = none)")
    fs: int = Field(100, ge=50, le=1000, description="model sampling rate (paper: 500)")
    n_samples: int = Field(1000, ge=64, description="samples per lead fed to the model (paper: 5000)")
    normalize: Literal["minmax", "zscore", "minmax_record"] = Field(
        "minmax", description="minmax / zscore: per record and lead; minmax_record: over the whole record (reference)"
    )
    lead_order: Literal["standard", "mimic"] = Field(
        "standard",
        description="row order fed to the model: standard = I, II, III, aVR, aVL, aVF, V1-V6 (the shards' order); "
                    "mimic = aVF before aVL, MIMIC-IV-ECG's order, which the reference's models were trained on",
    )
    max_text_tokens: int = Field(128, ge=8, le=512)
    batch_size: int = Field(16, ge=2, description="per worker")
    prefetch: int = Field(2, ge=0, description="batches prefetched by the Ray Data iterator")
    shuffle: Literal["global", "window", "none"] = Field(
        "global",
        description="training order, new every epoch: global = shard files in a fresh seeded order + a row window "
                    "of shuffle_buffer_rows (with shards prepared in shuffled order, as `merl data prepare` writes "
                    "them, batches then mix patients as a random permutation would); window = the row window only, "
                    "files in manifest order; none = manifest order (the reference's fixed order)",
    )
    shuffle_buffer_rows: int = Field(
        1024, ge=0,
        description="rows each worker shuffles among (global, window): memory ~ rows x 48 kB at 100 Hz x 1000, "
                    "x 240 kB at 500 Hz x 5000",
    )
