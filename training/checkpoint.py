"""Portable, verifiable training checkpoints.

One checkpoint directory (Ray Train uploads it to ``<storage>/<run>/checkpoint_stepNNNNNNNN``;
every rank reports its own local folder and Ray merges them into that one directory)::

    model.safetensors        full model weights (rank 0; under ZeRO-3 gathered from the partitions)
    optimizer.pt             DDP: the torch AdamW state            (torch.save, weights_only-loadable)
    deepspeed/state/...      DeepSpeed: ``engine.save_checkpoint``; each rank writes its own files
                             (its ZeRO partition of optimizer state, of the weights under ZeRO-3)
    scheduler.pt             LR scheduler state
    state.json               epoch / step / batches into the epoch / samples seen / seed / backend / world size
    config.json              the TrainConfig of the run
    COMPLETE.rank{r}.json    written LAST by each rank: sha256 of every file that rank wrote

A checkpoint is valid only if every rank's COMPLETE file exists and every listed file
matches its checksum, so a truncated upload is detected and the previous good checkpoint
used. Weights are safetensors and the DDP optimizer is plain torch state, so either
backend resumes the other's checkpoint from its weights and LR schedule (optimizer moments
then restart, with a warning). A DeepSpeed checkpoint resumes on another number of workers
through DeepSpeed's universal checkpoint conversion (:func:`to_universal`). Nothing is
unpickled: safetensors, JSON and ``torch.load(weights_only=True)``; DeepSpeed's own loads
run under :func:`safe_torch_loads`, which forces weights-only loading with an allowlist of
the few DeepSpeed value types its files hold.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from merl.core.io import atomic_write_bytes, atomic_write_text, download_dir, sha256_file
from merl.core.uri import filesystem, is_uri, join, local_path

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
STATE = "state.json"
CONFIG = "config.json"
DEEPSPEED_DIR = "deepspeed"  # engine.save_checkpoint(<checkpoint>/deepspeed, tag=DEEPSPEED_TAG)
DEEPSPEED_TAG = "state"
_STEP_RE = re.compile(r"checkpoint_step(\d+)")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint directory is incomplete or a file does not match its checksum."""


@dataclass
class TrainState:
    """Where training stands; restored on resume so step counters and the LR continue."""

    epoch: int = 0
    step: int = 0               # optimizer steps done
    batch_in_epoch: int = 0     # micro-batches of ``epoch`` already consumed (skipped on resume)
    samples_seen: int = 0       # global samples
    seed: int = 42
    best_score: float | None = None
    backend: str = "ddp"
    world_size: int = 1
    zero_stage: int = 0


def complete_name(rank: int) -> str:
    return f"COMPLETE.rank{rank}.json"


def torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write_checkpoint(
    directory: str | Path,
    *,
    rank: int,
    state: TrainState,
    model: torch.nn.Module | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict | None = None,
    scheduler_state: dict | None = None,
    config_json: str | None = None,
    backend_files: Sequence[str] = (),
) -> list[str]:
    """Write this rank's part of a checkpoint into ``directory``; COMPLETE file last.

    Rank 0 writes weights (``weights``, else ``model``'s), scheduler, state, config and the
    DDP ``optimizer_state``. ``backend_files`` are paths (relative to ``directory``) this
    rank already wrote there, e.g. by DeepSpeed: they are checksummed with the rest.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def put(rel: str, data: bytes) -> None:
        atomic_write_bytes(d / rel, data)
        written.append(rel)

    if rank == 0:
        if weights is None:
            assert model is not None, "rank 0 writes the weights: pass weights or model"
            weights = model.state_dict()
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}
        tmp = d / f".{WEIGHTS}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt", "step": str(state.step)})
        os.replace(tmp, d / WEIGHTS)
        written.append(WEIGHTS)
        if scheduler_state is not None:
            put(SCHEDULER, torch_bytes(scheduler_state))
        put(STATE, json.dumps(asdict(state), indent=2).encode())
        if config_json is not None:
            put(CONFIG, config_json.encode())
        if optimizer_state is not None:
            put(OPTIMIZER, torch_bytes(optimizer_state))
    written += [rel for rel in backend_files if rel not in written]
    sums = {rel: sha256_file(d / rel) for rel in written}
    atomic_write_text(d / complete_name(rank), json.dumps({"rank": rank, "files": sums}, indent=2))
    return written


def verify_checkpoint(directory: str | Path) -> TrainState:
    """Raise :class:`CorruptCheckpoint` unless every rank's files are present and intact."""
    d = Path(directory)
    if not (d / complete_name(0)).is_file() or not (d / STATE).is_file():
        raise CorruptCheckpoint(f"{d}: incomplete checkpoint (no {complete_name(0)} / {STATE})")
    try:
        state = TrainState(**json.loads((d / STATE).read_text()))
    except (ValueError, TypeError) as e:
        raise CorruptCheckpoint(f"{d}/{STATE}: unreadable ({e})") from None
    ranks = range(state.world_size) if state.backend == "deepspeed" else range(1)
    for r in ranks:
        marker = d / complete_name(r)
        if not marker.is_file():
            raise CorruptCheckpoint(f"{d}: rank {r} never finished writing ({marker.name} missing)")
        try:
            sums = json.loads(marker.read_text())["files"]
        except (ValueError, KeyError) as e:
            raise CorruptCheckpoint(f"{marker}: unreadable ({e})") from None
        for rel, digest in sums.items():
            f = d / rel
            if not f.is_file():
                raise CorruptCheckpoint(f"{d}: {rel} listed by rank {r} is missing")
            if sha256_file(f) != digest:
                raise CorruptCheckpoint(f"{d}: {rel} does not match its checksum (truncated or modified)")
    return state


@dataclass
class LoadedCheckpoint:
    path: str
    state: TrainState
    weights: dict[str, torch.Tensor]
    scheduler: dict | None
    optimizer: dict | None = None   # DDP
    config: dict | None = None
    deepspeed_dir: str | None = None  # DeepSpeed: engine.load_checkpoint(deepspeed_dir, tag=DEEPSPEED_TAG)


def load_checkpoint(directory: str | Path) -> LoadedCheckpoint:
    """Verify, then load a checkpoint with safetensors / ``torch.load(weights_only=True)``.

    DeepSpeed's files stay on disk for the engine to load (``deepspeed_dir``).
    """
    from safetensors.torch import load_file

    d = Path(directory)
    state = verify_checkpoint(d)

    def tload(p: Path) -> Any:
        return torch.load(p, map_location="cpu", weights_only=True)

    return LoadedCheckpoint(
        path=str(d),
        state=state,
        weights=load_file(str(d / WEIGHTS)),
        scheduler=tload(d / SCHEDULER) if (d / SCHEDULER).is_file() else None,
        optimizer=tload(d / OPTIMIZER) if (d / OPTIMIZER).is_file() else None,
        config=json.loads((d / CONFIG).read_text()) if (d / CONFIG).is_file() else None,
        deepspeed_dir=str(d / DEEPSPEED_DIR) if (d / DEEPSPEED_DIR / DEEPSPEED_TAG).is_dir() else None,
    )


def deepspeed_safe_globals() -> list[type]:
    """The non-tensor value types DeepSpeed pickles into its checkpoint files (ZeRO 0-3, fp32/bf16)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def safe_torch_loads() -> Iterator[None]:
    """Make every ``torch.load`` inside weights-only (DeepSpeed passes ``weights_only=False``).

    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides the callers' argument; the allowlist admits
    DeepSpeed's value types only, so a tampered file still cannot run code.
    """
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        with torch.serialization.safe_globals(deepspeed_safe_globals()):
            yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def deepspeed_partitioned(deepspeed_dir: str | Path) -> bool:
    """True if the DeepSpeed checkpoint holds ZeRO-partitioned optimizer state (stage >= 1)."""
    return any((Path(deepspeed_dir) / DEEPSPEED_TAG).glob("*optim_states.pt"))


def to_universal(deepspeed_dir: str | Path, out_root: str | Path) -> str:
    """Convert a ZeRO 1-3 checkpoint to DeepSpeed's universal format; the folder to load it from.

    A universal checkpoint stores each parameter's fp32 weights and Adam moments whole, so
    an engine with another number of ranks re-partitions them on load
    (``"checkpoint": {"load_universal": true}``; ZeRO 1 <-> 2 too, not 1-2 <-> 3). Runs in
    this process, one worker.
    """
    import argparse

    from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

    out = Path(out_root) / "universal"
    args = argparse.Namespace(input_folder=str(Path(deepspeed_dir) / DEEPSPEED_TAG),
                              output_folder=str(out / DEEPSPEED_TAG), num_extract_workers=1, num_merge_workers=1,
                              keep_temp_folder=False, strict=True, inject_missing_state=True)
    with safe_torch_loads(), contextlib.redirect_stdout(io.StringIO()):  # the converter prints progress
        ds_to_universal(args)
    return str(out)


def checkpoint_step(name: str) -> int:
    m = _STEP_RE.search(name)
    return int(m.group(1)) if m else -1


def list_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint folders of a run (local path or pyarrow/fsspec URI), newest step first."""
    import pyarrow.fs as pafs

    fs, root = filesystem(run_dir)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    names = [i.base_name for i in infos if i.type == pafs.FileType.Directory and checkpoint_step(i.base_name) >= 0]
    return [join(run_dir, n) for n in sorted(names, key=checkpoint_step, reverse=True)]


def _materialise(uri_or_path: str, scratch: str) -> str:
    """A local directory holding the checkpoint (downloads remote ones into ``scratch``)."""
    if not is_uri(uri_or_path):
        return local_path(uri_or_path)
    _, src = filesystem(uri_or_path)
    return str(download_dir(uri_or_path, Path(scratch) / PurePosixPath(src).name))


def load_latest_valid(candidates: list[str], scratch: str) -> LoadedCheckpoint | None:
    """First candidate that verifies; corrupt ones are logged and skipped."""
    for c in candidates:
        try:
            return load_checkpoint(_materialise(c, scratch))
        except (CorruptCheckpoint, OSError, RuntimeError, ValueError) as e:
            log.warning("skipping checkpoint %s: %s", c, e)
    return None


def fetch_checkpoint(uri_or_path: str, scratch: str) -> str:
    """A local folder holding the checkpoint at ``uri_or_path`` (remote ones downloaded into ``scratch``)."""
    return _materialise(uri_or_path, scratch)
