"""Portable, verifiable training checkpoints.

One checkpoint directory (Ray Train uploads it to ``<storage>/<run>/checkpoint_stepNNNNNNNN``)::

    model.safetensors        full model weights (rank 0; DeepSpeed ZeRO 0-2 holds them whole)
    optimizer.pt             DDP: the torch AdamW state            (torch.save, weights_only-loadable)
    optimizer/rank{r}.pt     DeepSpeed: each rank's (ZeRO-partitioned) optimizer state
    scheduler.pt             LR scheduler state
    state.json               epoch / step / batches into the epoch / samples seen / seed / backend / world size
    config.json              the TrainConfig of the run
    COMPLETE.rank{r}.json    written LAST by each rank: sha256 of every file that rank wrote

A checkpoint is valid only if every rank's COMPLETE file exists and every listed file
matches its checksum, so a truncated upload is detected and the previous good checkpoint
used. Weights are safetensors and the DDP optimizer is plain torch state, so a DeepSpeed
run resumes a DDP checkpoint and vice versa (the ZeRO-partitioned optimizer moments carry
over only between DeepSpeed runs with the same world size; otherwise they restart, with a
warning). Nothing is unpickled: ``torch.load(weights_only=True)`` and JSON only.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from merl.core.io import atomic_write_bytes, atomic_write_text, sha256_file
from merl.core.uri import filesystem, is_uri, join, local_path

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
STATE = "state.json"
CONFIG = "config.json"
_DS_DROP_KEYS = ("loss_scaler", "param_slice_mappings")  # objects; rebuilt by DeepSpeed on load
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


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _plain(obj: Any) -> Any:
    """Make DeepSpeed optimizer state weights_only-loadable (enums -> int, objects dropped)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k not in _DS_DROP_KEYS}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def write_checkpoint(
    directory: str | Path,
    *,
    rank: int,
    state: TrainState,
    model: torch.nn.Module | None = None,
    optimizer_state: dict | None = None,
    sharded_optimizer: bool = False,
    scheduler_state: dict | None = None,
    config_json: str | None = None,
) -> list[str]:
    """Write this rank's part of a checkpoint into ``directory``; COMPLETE file last.

    Rank 0 writes weights, scheduler, state and config; the optimizer goes to rank 0 only
    (DDP: replicated) or to every rank (``sharded_optimizer``: DeepSpeed ZeRO partitions).
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def put(rel: str, data: bytes) -> None:
        atomic_write_bytes(d / rel, data)
        written.append(rel)

    if rank == 0:
        assert model is not None
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        tmp = d / f".{WEIGHTS}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt", "step": str(state.step)})
        os.replace(tmp, d / WEIGHTS)
        written.append(WEIGHTS)
        if scheduler_state is not None:
            put(SCHEDULER, _torch_bytes(scheduler_state))
        put(STATE, json.dumps(asdict(state), indent=2).encode())
        if config_json is not None:
            put(CONFIG, config_json.encode())
    if optimizer_state is not None and (sharded_optimizer or rank == 0):
        rel = f"optimizer/rank{rank}.pt" if sharded_optimizer else OPTIMIZER
        put(rel, _torch_bytes(_plain(optimizer_state)))
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
    optimizer: dict | None = None                       # DDP / full state
    optimizer_shards: list[dict] = field(default_factory=list)  # DeepSpeed, one per saved rank
    config: dict | None = None


def load_checkpoint(directory: str | Path) -> LoadedCheckpoint:
    """Verify, then load a checkpoint with safetensors / ``torch.load(weights_only=True)``."""
    from safetensors.torch import load_file

    d = Path(directory)
    state = verify_checkpoint(d)

    def tload(p: Path) -> Any:
        return torch.load(p, map_location="cpu", weights_only=True)

    shards = []
    if (d / "optimizer").is_dir():
        shards = [tload(d / "optimizer" / f"rank{r}.pt") for r in range(state.world_size)
                  if (d / "optimizer" / f"rank{r}.pt").is_file()]
    return LoadedCheckpoint(
        path=str(d),
        state=state,
        weights=load_file(str(d / WEIGHTS)),
        scheduler=tload(d / SCHEDULER) if (d / SCHEDULER).is_file() else None,
        optimizer=tload(d / OPTIMIZER) if (d / OPTIMIZER).is_file() else None,
        optimizer_shards=shards,
        config=json.loads((d / CONFIG).read_text()) if (d / CONFIG).is_file() else None,
    )


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
    import pyarrow.fs as pafs

    fs, src = filesystem(uri_or_path)
    dest = Path(scratch) / PurePosixPath(src).name
    pafs.copy_files(src, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return str(dest)


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
