"""Train/val/test assignment: official folds, a published split file, or a seeded split.

The seeded split is by group (patient where the dataset has patient ids, else record), so
one patient's ECGs never straddle train and test. Given the same ids, groups, fractions and
seed it is identical on every machine and independent of the order records were listed in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from merl.core.config import ConfigError
from merl.training.data.schema import SPLITS

# (test fraction, val fraction of the rest) per dataset, as benchmarks.md describes.
DEFAULT_FRACTIONS: dict[str, tuple[float, float]] = {
    "mimic": (0.0, 0.02),
    "cpsc2018": (0.2, 0.1),
    "csn": (0.2, 0.1),
    "wfdb": (0.2, 0.1),
}  # PTB-XL always uses its strat_fold


def seeded_split(groups: list[str], test_fraction: float, val_fraction: float, seed: int) -> list[str]:
    """One split per element of ``groups``; all members of a group share it."""
    uniq = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(uniq))
    n_test = int(round(test_fraction * len(uniq)))
    n_val = int(round(val_fraction * (len(uniq) - n_test)))
    split_of: dict[str, str] = {}
    for rank, idx in enumerate(order):
        split_of[uniq[idx]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return [split_of[g] for g in groups]


def load_split_csv(path: str | Path) -> dict[str, str]:
    """A published split file (columns ``id``, ``split``) -> {id: split}."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"split file {p} not found")
    df = pd.read_csv(p, dtype=str)
    if not {"id", "split"} <= set(df.columns):
        raise ConfigError(f"split file {p}: needs columns 'id' and 'split', has {list(df.columns)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ConfigError(f"split file {p}: split values {bad} not in {list(SPLITS)}")
    return dict(zip(df["id"].str.strip(), df["split"].str.strip()))
