"""Render the figures of docs/synthetic.md.

docs/figures/synthetic_conditions.png: one synthetic record per major condition
(merl.training.data.plot.plot_ecg_grid). docs/figures/real_vs_synthetic.png: lead II of real
records next to synthetic ones with the same labels, and the measured amplitude, noise and
baseline distributions of both (merl.training.data.synth.measure). The real records are read
from ../shared/real-ecg at figure-making time only (never copied); without them that figure
is skipped.

Run: .venv/bin/python docs/make_figures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from merl.training.data.plot import plot_ecg_grid
from merl.training.data.synth import generate_record

CONDITIONS = [
    ["sinus_normal"], ["afib"], ["aflutter"], ["sinus_normal", "avb1"], ["sinus_normal", "mobitz1"],
    ["avb3"], ["sinus_normal", "lbbb"], ["sinus_normal", "rbbb"], ["sinus_normal", "wpw"],
    ["sinus_normal", "lvh"], ["sinus_normal", "mi_inferior", "acute_mi"], ["sinus_normal", "mi_anteroseptal"],
    ["sinus_normal", "bigeminy"], ["sinus_normal", "st_depression_lateral"], ["paced"], ["svt"],
]


def main(out: Path = Path(__file__).resolve().parent / "figures" / "synthetic_conditions.png",
         conditions: list[list[str]] = CONDITIONS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, conds in enumerate(conditions):
            rec = generate_record(np.random.default_rng([2024, k]), conditions=conds, nuisance_rate=0.0)
            title = f"synthetic {' + '.join(conds)}: {rec.report}"
            if len(title) > 95:
                title = title[:92] + "..."
            tiles.append(mpimg.imread(plot_ecg_grid(rec.signal_mv, rec.fs, title, Path(tmp) / f"{k}.png")))
    cols = 2
    rows = -(-len(tiles) // cols)
    h, w = tiles[0].shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * w / 150, rows * h / 150))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img in zip(np.ravel(axes), tiles):
        ax.imshow(img)
    fig.subplots_adjust(0, 0, 1, 1, 0.01, 0.01)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=75)
    plt.close(fig)
    from PIL import Image

    Image.open(out).convert("RGB").quantize(colors=32).save(out, optimize=True)  # ~5x smaller
    return out


REAL = Path(__file__).resolve().parents[2] / "shared" / "real-ecg"
# Real records shown, with the synthetic conditions their SNOMED labels map to.
PAIRS = [("cinc2021/HR06004", "sinus rhythm (PTB-XL)", ["sinus_normal"]),
         ("cinc2021/HR06002", "sinus bradycardia, IRBBB (PTB-XL)", ["sinus_brady", "irbbb"]),
         ("cinc2021/E07502", "sinus tachycardia (Georgia)", ["sinus_tachy"]),
         ("cinc2021/JS20001", "sinus tachycardia, PACs, IVCD (Chapman)", ["sinus_tachy", "pac", "ivcd"])]
MEASURES = [("qrs_ptp", "QRS peak-to-peak, median over leads (mV)", None),
            ("r_amp", "R amplitude in lead II (mV)", 1),
            ("hf_noise_uv", "noise > 35 Hz outside QRS, median over leads (uV)", None),
            ("wander_mv", "baseline wander < 0.6 Hz, median over leads (mV)", None)]


def real_records(root: Path = REAL) -> list[tuple[str, np.ndarray, float]]:
    """(name, signal mV (12, n), fs) of the real 12-lead records in ../shared/real-ecg."""
    import scipy.io
    import wfdb

    out = [(h.stem, wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T, 500.0)
           for h in sorted((root / "cinc2021").glob("*.hea"))]
    out += [(m.stem, scipy.io.loadmat(m)["ECG"][0, 0]["data"], 500.0) for m in sorted((root / "cpsc2018").glob("*.mat"))]
    if (root / "physionet-wfdb/s0010_re.hea").exists():
        r = wfdb.rdrecord(str(root / "physionet-wfdb/s0010_re"), channels=list(range(12)), sampto=10000)
        out.append(("s0010_re", r.p_signal.T, 1000.0))
    return out


def record_values(m: dict, key: str, lead: int | None) -> float:
    """One number per record: lead ``lead`` or the median over live leads (real files may
    hold all-zero leads)."""
    v = np.asarray(m[key], dtype=float)
    if lead is not None:
        return float(v[lead])
    live = np.isfinite(v) & (np.asarray(m["qrs_ptp"]) > 0.01)
    return float(np.median(v[live]))


def distributions(n_synth: int = 150, root: Path = REAL) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """measure -> (real values, synthetic values), one per record (as docs/synthetic.md tabulates)."""
    from merl.training.data.synth.measure import measure

    real = [measure(sig, fs) for _, sig, fs in real_records(root)]
    synth = [measure(r.signal_mv, r.fs) for r in (generate_record(np.random.default_rng([12, k])) for k in range(n_synth))]
    return {key: (np.array([record_values(m, key, lead) for m in real]),
                  np.array([record_values(m, key, lead) for m in synth])) for key, _, lead in MEASURES}


def real_vs_synthetic(out: Path = Path(__file__).resolve().parent / "figures" / "real_vs_synthetic.png",
                      root: Path = REAL) -> Path | None:
    """Lead II of real records beside synthetic ones with matching labels, plus histograms."""
    if not root.is_dir():
        print(f"{root} absent: real_vs_synthetic.png not made")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import wfdb

    fig = plt.figure(figsize=(15, 12))
    grid = fig.add_gridspec(len(PAIRS) + 1, 4, height_ratios=[1] * len(PAIRS) + [1.3], hspace=0.5, wspace=0.28,
                         top=0.93)
    for row, (name, label, conds) in enumerate(PAIRS):
        real = wfdb.rdrecord(str(root / name))
        sig = real.p_signal[:, real.sig_name.index("II")]
        rec = generate_record(np.random.default_rng([7, row]), conditions=conds, duration_s=10.0)
        for col, (y, fs, title) in enumerate([
                (sig, real.fs, f"real {name.split('/')[-1]}: {label}"),
                (rec.signal_mv[1], rec.fs, f"synthetic {' + '.join(conds)} ({rec.report_style} style, "
                 f"{rec.acquisition['highpass_hz']:g}-{rec.acquisition['lowpass_hz']:g} Hz)")]):
            ax = fig.add_subplot(grid[row, 2 * col: 2 * col + 2])
            n = int(6 * fs)
            ax.plot(np.arange(n) / fs, y[:n], lw=0.7, color="#1f3b73" if col == 0 else "#a0301e")
            ax.set_title(title, fontsize=9, loc="left")
            ax.set_xlim(0, 6)
            ax.grid(alpha=0.3)
            ax.set_ylabel("lead II, mV", fontsize=8)
            ax.tick_params(labelsize=7)
    dist = distributions(root=root)
    for k, (key, title, _) in enumerate(MEASURES):
        ax = fig.add_subplot(grid[len(PAIRS), k])
        rv, sv = dist[key]
        bins = np.histogram_bin_edges(np.concatenate([rv, sv]), bins=25)
        ax.hist(sv, bins=bins, density=True, alpha=0.55, color="#a0301e", label=f"synthetic (n={len(sv)})")
        ax.hist(rv, bins=bins, density=True, alpha=0.55, color="#1f3b73", label=f"real (n={len(rv)})")
        ax.plot(rv, np.zeros_like(rv), "|", color="#1f3b73", ms=12)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Real ECGs (../shared/real-ecg, PhysioNet) vs synthetic records with the same labels", fontsize=11, y=0.97)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70, bbox_inches="tight")
    plt.close(fig)
    from PIL import Image

    Image.open(out).convert("RGB").quantize(colors=32).save(out, optimize=True)
    return out


if __name__ == "__main__":
    if sys.argv[1:]:
        print(main(conditions=[c.split("+") for c in sys.argv[1:]]))
    else:
        print(main())
        print(real_vs_synthetic())
