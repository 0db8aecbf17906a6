"""A 12-lead ECG rendered like a paper printout: 25 mm/s, 10 mm/mV, pink millimetre grid.

Standard 3 x 4 layout (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, 2.5 s each) plus a
full-length lead II rhythm strip; other lead sets are drawn one full-length row per lead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from merl.training.data.schema import LEADS

_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
_ROW_MV = 3.0  # vertical space per row


def _grid(ax, t_end: float, y_lo: float, y_hi: float) -> None:
    minor_x = np.arange(0, t_end + 1e-9, 0.04)
    minor_y = np.arange(np.floor(y_lo / 0.5) * 0.5, y_hi + 1e-9, 0.1)
    ax.vlines(minor_x, y_lo, y_hi, colors="#f7c6c6", linewidth=0.3, zorder=0)
    ax.hlines(minor_y, 0, t_end, colors="#f7c6c6", linewidth=0.3, zorder=0)
    ax.vlines(minor_x[::5], y_lo, y_hi, colors="#ee8e8e", linewidth=0.7, zorder=0)
    ax.hlines(minor_y[::5], 0, t_end, colors="#ee8e8e", linewidth=0.7, zorder=0)


def plot_ecg_grid(signal_mv: np.ndarray, fs: float, title: str, out_png: str | Path, leads=LEADS) -> Path:
    """Render ``signal_mv`` (n_leads, N) in mV to ``out_png``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sig = np.asarray(signal_mv, dtype=np.float64)
    leads = list(leads)
    if sig.ndim != 2 or sig.shape[0] != len(leads):
        raise ValueError(f"signal has shape {sig.shape} but {len(leads)} lead names were given")
    n = sig.shape[1]
    t_end = n / fs
    t = np.arange(n) / fs
    pos = {lead: i for i, lead in enumerate(leads)}
    standard = all(lead in pos for row in _LAYOUT for lead in row)

    traces: list[tuple[np.ndarray, np.ndarray, float, str, float]] = []  # t, y, baseline, label, x0
    if standard:
        seg = t_end / 4
        for r, row in enumerate(_LAYOUT):
            base = -(r * _ROW_MV)
            for c, lead in enumerate(row):
                a, b = int(round(c * seg * fs)), int(round((c + 1) * seg * fs))
                traces.append((t[a:b], sig[pos[lead], a:b], base, lead, c * seg))
        traces.append((t, sig[pos["II"]], -(3 * _ROW_MV), "II", 0.0))
        n_rows = 4
    else:
        for r, lead in enumerate(leads):
            traces.append((t, sig[r], -(r * _ROW_MV), lead, 0.0))
        n_rows = len(leads)

    y_hi, y_lo = _ROW_MV / 2, -(n_rows - 0.5) * _ROW_MV
    width_in = max(t_end * 25 / 25.4, 4.0)
    height_in = (y_hi - y_lo) * 10 / 25.4 + 0.6
    fig, ax = plt.subplots(figsize=(width_in, height_in))
    _grid(ax, t_end, y_lo, y_hi)
    for tt, yy, base, label, x0 in traces:
        ax.plot(tt, np.clip(yy, -_ROW_MV / 2, _ROW_MV / 2) + base, color="black", linewidth=0.6, zorder=2)
        ax.text(x0 + 0.05, base + 0.9, label, fontsize=8, zorder=3)
    ax.set_xlim(0, t_end)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect(0.4)  # 1 mV = 10 mm against 1 s = 25 mm
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}  (25 mm/s, 10 mm/mV)", fontsize=9)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return out
