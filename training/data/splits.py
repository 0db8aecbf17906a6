"""Train/val/test assignment: official folds, a published split list, a split file, or a seeded split.

The paper's CPSC2018 and CSN split lists ship as package data (``published_splits/``,
:func:`published_split`): the benchmark's numbers are defined on them. The seeded split is
by group (patient where the dataset has patient ids, else record), so one patient's ECGs
never straddle train and test. Given the same ids, groups, fractions and seed it is
identical on every machine and independent of the order records were listed in.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources
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


# dataset -> the paper's split list in merl.training.data/published_splits/ (PTB-XL: strat_fold)
PUBLISHED_SPLITS: dict[str, str] = {"cpsc2018": "cpsc2018.csv", "csn": "csn.csv"}


def _split_table(df: pd.DataFrame, where: str) -> dict[str, str]:
    if not {"id", "split"} <= set(df.columns):
        raise ConfigError(f"split file {where}: needs columns 'id' and 'split', has {list(df.columns)}")
    df = df.assign(id=df["id"].str.strip(), split=df["split"].str.strip())
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ConfigError(f"split file {where}: split values {bad} not in {list(SPLITS)}")
    return dict(zip(df["id"], df["split"]))


def load_split_csv(path: str | Path) -> dict[str, str]:
    """A split file (columns ``id``, ``split``; local or a URI) -> {id: split}."""
    from merl.core.io import is_file, read_text

    p = str(path)
    if not is_file(p):
        raise FileNotFoundError(f"split file {p} not found")
    return _split_table(pd.read_csv(io.StringIO(read_text(p)), dtype=str), p)


@lru_cache(maxsize=4)
def published_split(dataset: str) -> dict[str, str]:
    """The paper's split of ``dataset`` (cpsc2018, csn) as shipped: {record name: split}."""
    if dataset not in PUBLISHED_SPLITS:
        raise ConfigError(f"no published split list for {dataset!r} (there are lists for "
                          f"{', '.join(PUBLISHED_SPLITS)}; PTB-XL uses its strat_fold)")
    name = PUBLISHED_SPLITS[dataset]
    text = resources.files("merl.training.data").joinpath("published_splits", name).read_text()
    return _split_table(pd.read_csv(io.StringIO(text), dtype=str), f"published_splits/{name}")
