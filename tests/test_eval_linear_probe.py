"""Linear probe: seeded exact subsamples; separable embeddings give a high AUC."""

from __future__ import annotations

import math

import numpy as np

from merl.evaluation.linear_probe import probe, subsample_indices


def test_subsample_sizes_exact_and_seeded():
    assert len(subsample_indices(17084, 0.01)) == 171
    assert len(subsample_indices(17084, 0.1)) == 1708
    assert len(subsample_indices(17084, 1.0)) == 17084
    assert len(subsample_indices(50, 0.001)) == 1  # at least one record
    a, b = subsample_indices(1000, 0.1, seed=7), subsample_indices(1000, 0.1, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, subsample_indices(1000, 0.1, seed=8))
    assert len(np.unique(a)) == len(a) and np.all(np.diff(a) > 0)


def test_probe_on_separable_embeddings():
    rng = np.random.default_rng(0)
    n, d = 600, 16
    y = (rng.random((n, 3)) < 0.3).astype(np.uint8)
    x = rng.standard_normal((n, d)) * 0.5
    x[:, :3] += 3.0 * y  # class j shifts dimension j
    fits = probe(x[:400], y[:400], x[400:], y[400:], ["a", "b", "c"], fractions=(0.05, 1.0), seed=1)
    assert [f.n_train for f in fits] == [20, 400]
    assert fits[1].macro_auc > 99.0
    assert all(math.isfinite(f.macro_auc) for f in fits)


def test_probe_class_absent_from_subsample_is_unfitted():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 4))
    y = np.zeros((100, 2), dtype=np.uint8)
    y[:50, 0] = 1
    y[-3:, 1] = 1  # rare class: absent from records 45..54
    x_tr, y_tr = x[45:55], y[45:55]
    fits = probe(x_tr, y_tr, x, y, ["common", "rare"], fractions=(1.0,))
    assert fits[0].unfitted == ["rare"] and fits[0].per_class_auc["rare"] == 50.0
