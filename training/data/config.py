"""What the data layer needs to know: where shards are, and how signals and reports become tensors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from merl.core.config import StrictModel


class LeadDropoutConfig(StrictModel):
    """Training-time lead dropout: with probability ``p`` a record keeps only one family's
    subset of its leads (the rest zeroed and masked), so the encoder learns reduced-lead ECGs."""

    p: float = Field(0.0, ge=0.0, le=1.0, description="share of training records given a reduced lead set (0 = off)")
    families: dict[Literal["limb", "chest", "single", "random"], float] = Field(
        default_factory=lambda: {"limb": 1.0, "chest": 1.0, "single": 1.0, "random": 1.0},
        description="relative weight of each subset family: limb = I..aVF, chest = V1..V6, single = one lead, "
                    "random = each lead kept with probability keep",
    )
    keep: float = Field(0.5, gt=0.0, le=1.0, description="per-lead keep probability of the random family")

    @model_validator(mode="after")
    def _weights(self) -> LeadDropoutConfig:
        if self.p > 0 and (not self.families or any(w < 0 for w in self.families.values())
                           or sum(self.families.values()) <= 0):
            raise ValueError("data.lead_dropout.families needs non-negative weights with a positive sum")
        return self


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
    lead_dropout: LeadDropoutConfig = Field(
        default_factory=LeadDropoutConfig,
        description="training records given a reduced lead set (off by default and in the paper preset)",
    )
