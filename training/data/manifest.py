"""``SHARDS/manifest.json``: what a shard folder holds, written last and atomically.

Training and evaluation list shard files only through the manifest, so a folder with a
half-finished ``prepare`` run is never read as if complete. The folder may be local or a
URI (``s3://bucket/shards``): paths are joined as strings, never through pathlib.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from merl.core.io import atomic_write_text, is_file, read_text
from merl.core.uri import join
from merl.training.data.schema import SCHEMA_VERSION

MANIFEST_NAME = "manifest.json"
QUARANTINE_NAME = "quarantine.jsonl"


class ShardInfo(BaseModel):
    file: str  # relative to the shard folder
    rows: int
    sha256: str
    splits: dict[str, int] = Field(default_factory=dict)
    masked: int = 0  # records with at least one masked (absent, flat, all-NaN) lead


class Counts(BaseModel):
    records: int = 0
    quarantined: int = 0
    excluded: int = 0  # readable records left out by the split policy (not in the published list / split file)
    by_split: dict[str, int] = Field(default_factory=dict)
    masked: int = 0  # kept records with at least one masked lead (lead_mask not all true)


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    dataset: str
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    counts: Counts = Field(default_factory=Counts)
    shards: list[ShardInfo] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)  # the prepare run's config, as JSON
    split: dict[str, Any] = Field(default_factory=dict)  # how splits were assigned (prepare.SplitOutcome.summary)

    def shard_paths(self, root: str | Path) -> list[str]:
        return [join(root, s.file) for s in self.shards]


def read_manifest(root: str | Path) -> Manifest:
    path = join(root, MANIFEST_NAME)
    if not is_file(path):
        raise FileNotFoundError(
            f"{root} is not a prepared shard folder (no {MANIFEST_NAME}); run `merl data prepare` first"
        )
    data = json.loads(read_text(path))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: shard schema version {data.get('schema_version')} but this merl-ray reads "
            f"version {SCHEMA_VERSION}; re-run `merl data prepare`"
        )
    return Manifest.model_validate(data)


def write_manifest(root: str | Path, manifest: Manifest) -> str:
    path = join(root, MANIFEST_NAME)
    atomic_write_text(path, manifest.model_dump_json(indent=2))
    return path
