"""`merl` commands for this area (heavy imports inside the command bodies)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)

# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = []


@app.command("prepare")
def prepare_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Dataset layout: mimic, ptbxl, cpsc2018, csn or wfdb (any folder of WFDB records)."
    ),
    root: str = typer.Option(..., "--root", help="Dataset root folder, as published (see docs/data.md)."),
    out: str = typer.Option(..., "--out", help="Shard folder to write (Parquet shards + manifest.json + quarantine.jsonl)."),
    address: str = typer.Option(
        None, "--address", help="Ray cluster address (auto, host:6379, ray://host:10001); default: embedded local cluster."
    ),
    config: str = typer.Option(None, "--config", "-c", help="YAML config (see configs/prepare.yaml)."),
    split_csv: str = typer.Option(
        None,
        "--split-csv",
        help="Split file with columns id,split; id = record id, source:id or record file name "
        "(overrides every other split; records not in it are excluded).",
    ),
    split: str = typer.Option(
        None, "--split", help="Split mode: auto (default: the paper's list for real CPSC2018/CSN, strat_fold for "
        "PTB-XL, seeded otherwise), published, seeded, csv.",
    ),
    preset: str = typer.Option(
        "default", "--preset", help="default, or paper: the reference's inputs (published splits; CPSC2018: first "
        "5 s zero-padded; PTB-XL at 500 Hz). Explicit key=value overrides still win.",
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. records_per_shard=512 canonical.crop=centre"),
) -> None:
    """Ingest a dataset into canonical Parquet shards (12 leads by name, 500 Hz, 5000 samples) on Ray.

    Re-running skips shards already finished; unusable records go to quarantine.jsonl with a reason.
    """
    from rich.console import Console
    from rich.table import Table

    from merl.core.config import load_config
    from merl.training.data.prepare import PRESETS, PrepareConfig, prepare, preset_overrides
    from merl.training.data.readers import DATASETS

    if dataset not in DATASETS:
        raise typer.BadParameter(f"{dataset!r}; choose one of {', '.join(DATASETS)}", param_hint="--dataset")
    if preset not in PRESETS:
        raise typer.BadParameter(f"{preset!r}; choose one of {', '.join(PRESETS)}", param_hint="--preset")
    items = preset_overrides(preset, dataset)
    if split:
        items.append(f"split.mode={split}")
    if split_csv:
        items += [f"split.csv={split_csv}", *([] if split else ["split.mode=csv"])]
    items += list(overrides or [])
    cfg = load_config(PrepareConfig, config, items)
    if not __import__("pathlib").Path(root).is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    res = prepare(dataset, root, out, cfg, address=address)
    c = res.manifest.counts
    console = Console()
    t = Table(title=f"merl data prepare: {dataset} -> {res.out}")
    t.add_column("")
    t.add_column("value", justify="right")
    rate = c.records / res.seconds if res.seconds else 0.0
    sp = res.manifest.split
    rows = [
        ("records", c.records),
        ("quarantined", c.quarantined),
        ("with masked leads (kept)", c.masked),
        ("split", f"{sp.get('mode', '?')}" + (f" ({sp['list']})" if sp.get("list") else "")),
        ("excluded (not in the split list)", c.excluded),
        *[(f"  {k}", v) for k, v in c.by_split.items()],
        ("shards written", res.written),
        ("shards skipped (already done)", res.skipped),
        ("seconds", f"{res.seconds:.1f}"),
        ("records/s", f"{rate:.0f}"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    for reason, n in res.quarantine_reasons.items():
        console.print(f"  quarantined {n:>6}  {reason}")
    console.print(f"{c.quarantined} records quarantined (details: {res.out}/quarantine.jsonl)")


@app.command("inspect")
def inspect_cmd(
    shards: str = typer.Argument(..., help="Shard folder written by `merl data prepare`."),
    plot: str = typer.Option(None, "--plot", help="Record id to render (e.g. ptbxl:17 or 17)."),
    out: str = typer.Option("ecg.png", "--out", help="PNG path for --plot."),
    top: int = typer.Option(20, "--top", help="Number of labels in the frequency table."),
) -> None:
    """Counts, per-split counts, label frequencies and grouped quarantine reasons of a shard folder."""
    from rich.console import Console

    from merl.training.data.inspect import plot_record, render, summarize

    console = Console()
    render(summarize(shards), console, top=top)
    if plot:
        try:
            path = plot_record(shards, plot, out)
        except KeyError as e:
            raise FileNotFoundError(str(e.args[0])) from None
        console.print(f"wrote {path}")


@app.command("synth")
def synth_cmd(
    layout: str = typer.Option(..., "--layout", "-l", help="Published layout to write: mimic, ptbxl, cpsc2018 or csn."),
    out: str = typer.Option(..., "--out", help="Folder to write the synthetic dataset into (created if missing)."),
    n: int = typer.Option(1000, "--n", help="Number of records."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed and arguments give the same bytes, whatever --workers."),
    corrupt_fraction: float = typer.Option(
        0.0, "--corrupt-fraction", help="Fraction of records written damaged (listed in corrupt.json) for robustness tests."
    ),
    workers: int = typer.Option(None, "--workers", "-w", help="Worker processes (default: all CPUs)."),
    realism: float = typer.Option(
        1.0, "--realism", help="Scale of the recording nuisances (mains, EMG bursts, motion artefacts, monitoring filter, "
        "coarse ADC, 250-1000 Hz rates): 1 the default mix, 0 clean 500 Hz diagnostic recordings."
    ),
) -> None:
    """Write a SYNTHETIC ECG-report dataset (physiological 12-lead signals, machine reports, labels) in a published layout.

    Ground truth per record goes to truth.jsonl; see docs/synthetic.md for conditions and label coverage.
    """
    from rich.console import Console
    from rich.table import Table

    from merl.training.data.synth import LAYOUTS, synthesize

    if layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}; choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if n < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--n")
    if not 0.0 <= corrupt_fraction <= 1.0:
        raise typer.BadParameter("must be within [0, 1]", param_hint="--corrupt-fraction")
    if realism < 0.0:
        raise typer.BadParameter("must be >= 0", param_hint="--realism")
    s = synthesize(layout, out, n, seed=seed, corrupt_fraction=corrupt_fraction, num_workers=workers, realism=realism)
    t = Table(title=f"merl data synth: synthetic {layout} corpus -> {s.out}")
    t.add_column("")
    t.add_column("value", justify="right")
    rate = s.n_records / s.seconds if s.seconds else 0.0
    for k, v in [
        ("records (synthetic)", s.n_records),
        ("damaged (corrupt.json)", s.n_corrupt),
        ("MB written", f"{s.bytes_written / 1e6:.1f}"),
        ("seconds", f"{s.seconds:.1f}"),
        ("records/s", f"{rate:.0f}"),
        ("seed", s.seed),
        ("realism", s.realism),
    ]:
        t.add_row(k, str(v))
    console = Console()
    console.print(t)
    top = sorted(s.condition_counts.items(), key=lambda kv: -kv[1])[:12]
    console.print("most frequent synthetic conditions: " + ", ".join(f"{k} {v}" for k, v in top))
