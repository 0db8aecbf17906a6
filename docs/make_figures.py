"""Render docs/figures/synthetic_conditions.png: one synthetic record per major condition.

Run: .venv/bin/python docs/make_figures.py   (uses merl.training.data.plot.plot_ecg_grid)
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


if __name__ == "__main__":
    print(main(conditions=[c.split("+") for c in sys.argv[1:]] or CONDITIONS))
