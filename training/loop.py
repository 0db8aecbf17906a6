"""``train_loop_per_worker``: the one MERL training loop, for both DDP and DeepSpeed.

Runs inside each Ray Train worker. Backend-specific code is limited to wrapping the model
(:class:`_DDPStepper` / :class:`_DeepSpeedStepper`, both a :class:`Stepper`: input dtype,
backward, accumulation, clipping, step, an evaluation view of the weights, and saving and
loading optimizer state); data, loss, validation, logging and the checkpoint format are
shared, so both backends train (and resume) the same way. The loop is :func:`restore`,
then per epoch :func:`run_epoch`, :func:`validate_epoch` and :func:`report` (which also
checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from merl.core.io import atomic_write_bytes
from merl.training.checkpoint import (
    DEEPSPEED_DIR,
    DEEPSPEED_TAG,
    OPTIMIZER,
    LoadedCheckpoint,
    TrainState,
    deepspeed_partitioned,
    list_checkpoints,
    load_latest_valid,
    safe_torch_loads,
    to_universal,
    torch_bytes,
    write_checkpoint,
)
from merl.training.config import TrainConfig
from merl.training.data.loader import Collate, iter_shuffle_options, pad_id_for
from merl.training.loss import MAX_LOGIT_SCALE, MERLLoss, clip_loss, retrieval_accuracy
from merl.training.metrics_log import MetricsLogger
from merl.training.model import build_model

log = logging.getLogger("merl.train")

SCORE = "checkpoint_score"  # what CheckpointConfig ranks: val_zeroshot_auc if configured, else -val_loss
NO_SCORE = -1e9  # before the first validation (finite: Ray's run snapshot is JSON and drops -inf)


def seed_everything(seed: int, rank: int = 0, step: int = 0) -> None:
    """Seed python/numpy/torch per (seed, rank, step): a resumed run reseeds where it stopped."""
    s = (seed * 1_000_003 + rank * 7919 + step) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def lr_lambda(cfg_optim) -> Any:
    """Linear warmup, then cosine annealing with warm restarts every ``T_0`` steps (T_mult=1)."""
    floor = cfg_optim.eta_min / cfg_optim.lr

    def f(step: int) -> float:
        if step < cfg_optim.warmup_steps:
            return (step + 1) / cfg_optim.warmup_steps
        t = (step - cfg_optim.warmup_steps) % cfg_optim.T_0
        return floor + (1 - floor) * (1 + math.cos(math.pi * t / cfg_optim.T_0)) / 2

    return f


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.optim))
    return opt, sched


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates
    it, slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence probed
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def use_bf16(cfg: TrainConfig) -> bool:
    """Resolved on the worker, where the device is known."""
    mode = cfg.train.bf16
    if mode in ("on", "off"):
        return mode == "on"
    if cfg.train.use_gpu and torch.cuda.is_available():
        return True
    return mode == "native" and cpu_has_bf16()


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict derived from TrainConfig, with ``train.deepspeed`` merged over it.

    Optimizer and scheduler are passed to DeepSpeed as objects, so they stay the loop's.
    """
    generated = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "train_batch_size": cfg.data.batch_size * cfg.optim.grad_accum * world_size,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.train.zero_stage},
        "bf16": {"enabled": use_bf16(cfg)},
        # DeepSpeed 0.19 casts parameters only; BatchNorm's running stats would stay fp32
        # beside bf16 weights, and its backward refuses the mix (seen on an H200).
        **({"data_types": {"buffer_dtype": "bf16"}} if use_bf16(cfg) else {}),
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return _merge(generated, cfg.train.deepspeed)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_warned_device = False


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Every tensor of ``batch`` on ``device``.

    Ray's ``iter_torch_batches(device=...)`` already moves an all-tensor collate output on
    its prefetch thread, so this is a no-op; a batch that arrives elsewhere (a collate that
    returns something Ray does not treat as a tensor batch) is moved here, with a warning
    once, instead of failing in the first GPU kernel.
    """
    global _warned_device
    device = torch.device(device)
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and (v.device.type != device.type or
                                            (device.index is not None and v.device.index != device.index)):
            if not _warned_device:
                log.warning("batch field %r arrived on %s, not %s: moving it in the training loop "
                            "(the collate output is not a tensor batch Ray moves itself)", k, v.device, device)
                _warned_device = True
            v = v.to(device, non_blocking=True)
        out[k] = v
    return out


class Stepper(Protocol):
    """What the loop needs from a backend, so no code outside the two steppers asks which one it has.

    ``module`` is the unwrapped ``MERLModel`` (under ZeRO-3 its weights are partitioned:
    use :meth:`evaluating` for forward passes outside training); ``on_every_rank`` says
    every rank writes part of a checkpoint (DeepSpeed) rather than rank 0 alone (DDP).
    """

    module: torch.nn.Module
    scheduler: Any
    optimizer: Any
    on_every_rank: bool

    def cast_input(self, ecg: torch.Tensor) -> torch.Tensor:
        """The ECG batch in the dtype the engine's weights expect (bf16 under DeepSpeed bf16)."""
        ...

    def forward(self, ecg: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                lead_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]: ...

    def backward_step(self, loss: torch.Tensor) -> bool:
        """Backward one micro-batch; True when that completed an optimizer step."""
        ...

    def lr(self) -> float: ...

    def evaluating(self) -> contextlib.AbstractContextManager[torch.nn.Module]:
        """A full-weight module in eval mode, under the training precision, for rank-local
        forward passes (validation, zero-shot scoring). Every rank enters it (ZeRO-3 gathers)."""
        ...

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """The whole model's state dict, at least on rank 0 (ZeRO-3: ``None`` elsewhere). Every rank calls it."""
        ...

    def save(self, directory: str, rank: int) -> list[str]:
        """Write this rank's backend state (optimizer; DeepSpeed: its whole engine checkpoint
        part) into ``directory``; the relative paths written. Every rank calls it."""
        ...

    def load(self, ckpt: LoadedCheckpoint) -> None:
        """Restore optimizer state from ``ckpt`` (weights were loaded before wrapping)."""
        ...


class _DDPStepper:
    on_every_rank = False

    def __init__(self, model, cfg: TrainConfig, device):
        import ray.train.torch

        self.cfg = cfg
        self.device = torch.device(device)
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        self.model = ray.train.torch.prepare_model(model)
        self.module = self.model.module if hasattr(self.model, "module") else self.model
        self.micro = 0
        self.autocast = use_bf16(cfg)

    def cast_input(self, ecg):
        return ecg  # fp32 weights; bf16 comes from autocast inside forward only

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def forward(self, ecg, ids, mask, lead_mask=None):
        with self._autocast():
            return self.model(self.cast_input(ecg), ids, mask, lead_mask)

    def backward_step(self, loss) -> bool:
        self.micro += 1
        boundary = self.micro % self.cfg.optim.grad_accum == 0
        if boundary or not hasattr(self.model, "no_sync"):
            (loss / self.cfg.optim.grad_accum).backward()
        else:
            with self.model.no_sync():
                (loss / self.cfg.optim.grad_accum).backward()
        if boundary:
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return boundary

    @contextlib.contextmanager
    def evaluating(self):
        was = self.module.training
        self.module.eval()
        try:
            with self._autocast():  # validation runs in the precision training does
                yield self.module
        finally:
            self.module.train(was)

    def full_weights(self):
        return self.module.state_dict()

    def save(self, directory: str, rank: int) -> list[str]:
        if rank != 0:
            return []  # replicated: rank 0's copy is everyone's
        atomic_write_bytes(Path(directory) / OPTIMIZER, torch_bytes(self.optimizer.state_dict()))
        return [OPTIMIZER]

    def load(self, ckpt: LoadedCheckpoint) -> None:
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        else:
            log.warning("checkpoint %s has no DDP optimizer state (saved by DeepSpeed): Adam moments restart", ckpt.path)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


class _DeepSpeedStepper:
    """DeepSpeed engine; checkpoints are DeepSpeed's own (``engine.save_checkpoint``).

    Resuming on the same number of ranks and ZeRO stage loads them natively; on another
    number of ranks (or between stages 1 and 2) the checkpoint is first converted to DeepSpeed's
    universal format, which re-partitions weights and Adam moments. The decision is made
    before ``deepspeed.initialize`` because the engine must be built to load universal ones.
    """

    on_every_rank = True

    def __init__(self, model, cfg: TrainConfig, world_size: int, resume: LoadedCheckpoint | None = None,
                 scratch: str | None = None):
        import deepspeed

        self.cfg = cfg
        self.stage = cfg.train.zero_stage
        self.world_size = world_size
        self._load_dir, universal = self._plan_load(resume, scratch or tempfile.mkdtemp(prefix="merl-ds-"))
        config = deepspeed_config(cfg, world_size)
        if universal:
            config["checkpoint"] = {**config.get("checkpoint", {}), "load_universal": True}
        optimizer, scheduler = build_optimizer(model, cfg)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config, dist_init_required=False,
        )
        self.module = self.engine.module
        self.bf16 = use_bf16(cfg)

    def _plan_load(self, resume: LoadedCheckpoint | None, scratch: str) -> tuple[str | None, bool]:
        """(folder for ``engine.load_checkpoint``, whether it is universal); (None, False) = moments restart."""
        if resume is None:
            return None, False
        saved = resume.state
        if resume.deepspeed_dir is None:
            log.warning("checkpoint %s has no DeepSpeed state (saved by %s): weights and LR schedule resume, "
                        "Adam moments restart", resume.path, saved.backend)
            return None, False
        partitioned = deepspeed_partitioned(resume.deepspeed_dir)
        if saved.zero_stage == self.stage and (saved.world_size == self.world_size or not partitioned):
            return resume.deepspeed_dir, False
        # Universal checkpoints re-cut ZeRO 1-2 <-> 1-2 and 3 <-> 3 (DeepSpeed 0.19 names the
        # model-state files differently under ZeRO-3, so 1-2 <-> 3 does not load).
        if partitioned and self.stage > 0 and (saved.zero_stage == 3) == (self.stage == 3):
            try:
                out = to_universal(resume.deepspeed_dir, scratch)
            except Exception as e:  # noqa: BLE001 - any converter failure leaves the moments to restart
                log.warning("cannot re-partition %s (ZeRO-%d on %d ranks -> ZeRO-%d on %d): %s; weights and LR "
                            "schedule resume, Adam moments restart", resume.path, saved.zero_stage, saved.world_size,
                            self.stage, self.world_size, e)
                return None, False
            log.info("converted %s (ZeRO-%d on %d ranks) to a universal checkpoint for ZeRO-%d on %d ranks",
                     resume.path, saved.zero_stage, saved.world_size, self.stage, self.world_size)
            return out, True
        log.warning("checkpoint %s was saved at ZeRO-%d, this run uses ZeRO-%d: weights and LR schedule resume, "
                    "Adam moments restart", resume.path, saved.zero_stage, self.stage)
        return None, False

    def cast_input(self, ecg):
        return ecg.to(torch.bfloat16) if self.bf16 else ecg  # the engine holds bf16 weights, no autocast

    def forward(self, ecg, ids, mask, lead_mask=None):
        return self.engine(self.cast_input(ecg), ids, mask, lead_mask)

    def backward_step(self, loss) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)
        self.engine.step()  # DeepSpeed accumulates, clips, steps optimizer + scheduler at boundaries
        return boundary

    @contextlib.contextmanager
    def evaluating(self):
        if self.stage < 3:
            was = self.module.training
            self.module.eval()
            try:
                yield self.module
            finally:
                self.module.train(was)
            return
        # ZeRO-3: each rank holds a slice of every weight. Gather a full copy for the
        # rank-local passes (ranks see different numbers of batches, and zero-shot scoring
        # runs on rank 0 only, so the engine's collective forward would deadlock).
        import deepspeed

        params = dict(self.module.named_parameters())
        dtype = next(iter(params.values())).dtype  # bf16 under DeepSpeed bf16, as in training
        copy = build_model(self.cfg.model, self.cfg.loss, pretrained_text=False).to(self.engine.device, dtype)
        with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None), torch.no_grad():
            for name, p in copy.named_parameters():
                p.copy_(params[name].data)
        buffers = dict(self.module.named_buffers())
        with torch.no_grad():
            for name, b in copy.named_buffers():
                b.copy_(buffers[name])
        yield copy.eval()

    def full_weights(self):
        if self.stage == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()  # collective; rank 0 gets the dict
        return self.module.state_dict()

    def save(self, directory: str, rank: int) -> list[str]:
        from deepspeed.checkpoint.constants import (
            UNIVERSAL_CHECKPOINT_INFO,
            UNIVERSAL_CHECKPOINT_VERSION_KEY,
            UNIVERSAL_CHECKPOINT_VERSION_VALUE,
        )

        root = Path(directory)
        ds_dir = root / DEEPSPEED_DIR
        ds_dir.mkdir(parents=True, exist_ok=True)
        # The universal-checkpoint marker lets a later run on another number of ranks convert it.
        self.engine.save_checkpoint(str(ds_dir), tag=DEEPSPEED_TAG, save_latest=False, client_state={
            UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}})
        return sorted(p.relative_to(root).as_posix() for p in ds_dir.rglob("*") if p.is_file())

    def load(self, ckpt: LoadedCheckpoint) -> None:
        if self._load_dir is None:
            return  # _plan_load said why
        with safe_torch_loads():
            path, _ = self.engine.load_checkpoint(self._load_dir, tag=DEEPSPEED_TAG, load_module_strict=True,
                                                  load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load {self._load_dir} (tag {DEEPSPEED_TAG})")
        if self._load_dir != ckpt.deepspeed_dir:
            shutil.rmtree(self._load_dir, ignore_errors=True)  # the converted copy

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def _maybe_test_crash(hook: dict | None, rank: int, step: int) -> None:
    """TEST-ONLY fault injection: kill this worker process once (marker file) at a given step."""
    if not hook or rank != hook["rank"] or step != hook["step"]:
        return
    marker = Path(hook["marker"])
    if marker.exists():
        return
    marker.write_text(f"crashed rank {rank} at step {step}\n")
    os._exit(1)


def _resume(run_dir: str | None, scratch: str, init_checkpoint: str | None = None) -> LoadedCheckpoint | None:
    """Latest valid checkpoint: Ray's latest reported one, else scan the run folder, else
    ``init_checkpoint`` (where a new run starts from, e.g. the one PBT hands a Tune trial)."""
    import ray.train

    candidates = []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        candidates.append(ckpt.path if ckpt.filesystem is None or "Local" in type(ckpt.filesystem).__name__
                          else ckpt.to_directory(os.path.join(scratch, "ray_latest")))
    if run_dir:
        candidates += [c for c in list_checkpoints(run_dir) if c not in candidates]
    if init_checkpoint and init_checkpoint not in candidates:
        candidates.append(init_checkpoint)
    return load_latest_valid(candidates, scratch) if candidates else None


def apply_config_hparams(model: torch.nn.Module, cfg: TrainConfig, saved: dict | None) -> None:
    """Weights restored from a checkpoint trained with another initial temperature (PBT's
    explore step, or a user's edit) restart the logit scale at this config's value; a plain
    resume, with the same config, keeps the learned one."""
    old = (saved or {}).get("loss", {}).get("temperature")
    if old is not None and not math.isclose(old, cfg.loss.temperature):
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1.0 / cfg.loss.temperature))
        log.info("temperature %.4g -> %.4g (config changed since the checkpoint)", old, cfg.loss.temperature)


def apply_config_lr(stepper: Stepper, cfg: TrainConfig, saved: dict | None) -> None:
    """After the optimizer and scheduler state load, the config's learning rate wins over the
    checkpoint's (the schedule keeps its position): PBT mutates ``optim.lr`` between runs."""
    old = (saved or {}).get("optim", {}).get("lr")
    if old is None or math.isclose(old, cfg.optim.lr):
        return
    sched = stepper.scheduler
    sched.base_lrs = [cfg.optim.lr for _ in sched.base_lrs]
    sched.lr_lambdas = [lr_lambda(cfg.optim) for _ in sched.lr_lambdas]  # its floor is eta_min / lr
    factor = sched.lr_lambdas[0](max(sched.last_epoch, 0))
    for group in sched.optimizer.param_groups:
        group["initial_lr"] = cfg.optim.lr
        group["lr"] = cfg.optim.lr * factor
    log.info("learning rate %.4g -> %.4g (config changed since the checkpoint)", old, cfg.optim.lr)


def _all_gather_objects(obj: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def validate(stepper: Stepper, shard, collate, cfg: TrainConfig, device) -> dict[str, float]:
    """Validation loss + ECG->report retrieval over the whole (all workers') held-out split."""
    losses, ecg_embs, txt_embs, keys = [], [], [], []
    with stepper.evaluating() as module:
        for batch in shard.iter_torch_batches(batch_size=cfg.data.batch_size, collate_fn=collate, device=device):
            batch = to_device(batch, device)
            ecg = stepper.cast_input(batch["ecg"])
            out = module(ecg, batch["input_ids"], batch["attention_mask"], batch.get("lead_mask"))
            losses.append((float(clip_loss(out["ecg"], out["text"], out["logit_scale"], gather=False)[0]), len(ecg)))
            ecg_embs.append(out["ecg"].float().cpu())
            txt_embs.append(out["text"].float().cpu())
            keys += batch["report_key"].tolist()
    parts = _all_gather_objects((
        torch.cat(ecg_embs) if ecg_embs else torch.zeros(0, cfg.model.proj_dim),
        torch.cat(txt_embs) if txt_embs else torch.zeros(0, cfg.model.proj_dim),
        keys, losses))
    ecg_all = torch.cat([p[0] for p in parts])
    txt_all = torch.cat([p[1] for p in parts])
    key_all = [k for p in parts for k in p[2]]
    loss_n = [x for p in parts for x in p[3]]
    if not key_all:
        return {}
    acc = retrieval_accuracy(ecg_all, txt_all, key_all)
    n = sum(c for _, c in loss_n)
    return {"val_loss": sum(v * c for v, c in loss_n) / n, "val_top1": acc[1], "val_top5": acc[5],
            "val_n": len(key_all), "val_distinct_reports": len(set(key_all))}


def zeroshot_validation(stepper: Stepper, cfg: TrainConfig, device) -> dict[str, float]:
    """Mean macro AUC over ``cfg.eval.tasks`` (rank 0 computes, every rank gets the value).

    Scored by :func:`merl.training.zeroshot.score_split`, the path ``merl evaluate`` uses,
    so the metric that ranks checkpoints is the one the benchmark reports.
    """
    if not cfg.eval.tasks:
        return {}
    value = None
    with stepper.evaluating() as module:  # every rank: ZeRO-3 gathers the weights here
        if not dist.is_initialized() or dist.get_rank() == 0:
            from merl.training.data.loader import _tokenizer
            from merl.training.metrics import task_metrics
            from merl.training.zeroshot import load_prompts, score_split

            aucs = {}
            for task in cfg.eval.tasks:
                prompts = load_prompts(cfg.eval.prompts, task) if cfg.eval.prompts else None
                s = score_split(module, _tokenizer(cfg.model.text_model), task, cfg.eval.shards[task], cfg.data,
                                prompts=prompts, split=cfg.eval.split, batch_size=cfg.eval.batch_size,
                                device=str(device), max_prompt_tokens=cfg.eval.max_prompt_tokens)
                aucs[f"val_zeroshot_auc_{task}"] = float(task_metrics(s.y, s.scores, s.labels).macro_auc)
            value = {"val_zeroshot_auc": float(np.mean(list(aucs.values()))), **aucs}
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    return value


@dataclass
class _Worker:
    """What the pieces of one worker's loop share: config, placement, backend, progress, sinks."""

    cfg: TrainConfig
    rank: int
    world: int
    device: Any
    stepper: Stepper
    state: TrainState
    metrics_log: MetricsLogger
    collate: Collate
    crash_hook: dict | None = None
    last_saved: int = -1  # step of the last checkpoint written (never write one step twice)
    t_last: float = field(default_factory=time.perf_counter)  # throughput window, across epochs
    n_last: int = 0


def restore(cfg: TrainConfig, run_dir: str | None, rank: int, world: int, device,
            init_checkpoint: str | None = None) -> tuple[Stepper, TrainState]:
    """Model, backend and TrainState, continued from the run's latest valid checkpoint if any
    (else from ``init_checkpoint``).

    Weights (and buffers) load before the backend wraps the model (DeepSpeed partitions
    them in its engine); optimizer state after, into what the backend built. The LR
    schedule always comes from ``scheduler.pt`` and is applied to the optimizer at once, so
    the first step after a resume uses the LR the uninterrupted run would have. Reseeding
    by step makes a resumed run draw as the uninterrupted one would have. Temperature and
    learning rate follow this config when the checkpoint's differ (PBT's explore step).
    """
    scratch = tempfile.mkdtemp(prefix="merl-ckpt-")
    resumed = _resume(run_dir, scratch, init_checkpoint)
    model = build_model(cfg.model, cfg.loss)
    state = TrainState(seed=cfg.train.seed, backend=cfg.train.backend, world_size=world,
                       zero_stage=cfg.train.zero_stage if cfg.train.backend == "deepspeed" else 0)
    if resumed is not None:
        model.load_state_dict(resumed.weights)
        apply_config_hparams(model, cfg, resumed.config)
        state.epoch, state.step = resumed.state.epoch, resumed.state.step
        state.batch_in_epoch, state.samples_seen = resumed.state.batch_in_epoch, resumed.state.samples_seen
        state.best_score = resumed.state.best_score
        seed_everything(cfg.train.seed, rank, state.step)
    stepper: Stepper = (_DeepSpeedStepper(model, cfg, world, resumed, scratch) if cfg.train.backend == "deepspeed"
                        else _DDPStepper(model.to(device), cfg, device))
    if resumed is not None:
        stepper.load(resumed)
        if resumed.scheduler is not None:
            stepper.scheduler.load_state_dict(resumed.scheduler)
            for group, lr in zip(stepper.optimizer.param_groups, stepper.scheduler.get_last_lr()):
                group["lr"] = lr
        apply_config_lr(stepper, cfg, resumed.config)
        if rank == 0:
            log.info("resumed from %s at epoch %d step %d (lr %.3g; saved by %d %s ranks, now %d)", resumed.path,
                     state.epoch, state.step, stepper.lr(), resumed.state.world_size, resumed.state.backend, world)
    shutil.rmtree(scratch, ignore_errors=True)
    return stepper, state


def report(w: _Worker, metrics: dict[str, Any], with_checkpoint: bool) -> None:
    """``ray.train.report`` the metrics, with a checkpoint unless this step already has one.

    Every rank reports (Ray Train requires it) and takes part in saving (DeepSpeed ranks
    each write their partition; ZeRO-3 gathers the weights for rank 0). The checkpoint's
    ``SCORE`` is its own validation score, ``NO_SCORE`` when ``metrics`` carry none (a
    mid-epoch checkpoint), so Ray ranks only validated checkpoints as best.
    """
    import ray.train
    from ray.train import Checkpoint

    state, stepper = w.state, w.stepper
    metrics = {**metrics, "step": state.step, "epoch": state.epoch, "samples_seen": state.samples_seen}
    metrics.setdefault(SCORE, NO_SCORE)
    if not with_checkpoint or state.step == w.last_saved:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="merl-ckpt-out-") as tmp:
        files = stepper.save(tmp, w.rank)
        weights = stepper.full_weights()
        write_checkpoint(tmp, rank=w.rank, state=state, weights=weights if w.rank == 0 else None,
                         scheduler_state=stepper.scheduler.state_dict(), config_json=w.cfg.model_dump_json(indent=2),
                         backend_files=files)
        ckpt = Checkpoint.from_directory(tmp) if (stepper.on_every_rank or w.rank == 0) else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"checkpoint_step{state.step:08d}")
    w.last_saved = state.step


def _log_train(w: _Worker, metrics: dict[str, float]) -> None:
    """Every ``log_every`` steps: throughput since the last line, progress line, metric sinks."""
    state = w.state
    dt = time.perf_counter() - w.t_last
    metrics["samples_per_s"] = w.n_last / dt if dt > 0 else 0.0
    if torch.device(w.device).type == "cuda":
        metrics["gpu_peak_mem_gib"] = torch.cuda.max_memory_allocated(w.device) / 2**30
    w.t_last, w.n_last = time.perf_counter(), 0
    if w.rank == 0:
        log.info("epoch %d step %d loss %.4f (clip %.4f uni %.4f) top1 %.2f lr %.3g | %.1f samples/s",
                 state.epoch, state.step, metrics["loss"], metrics["loss_clip"], metrics["loss_uni"],
                 metrics["train_top1"], metrics["lr"], metrics["samples_per_s"])
    w.metrics_log.log(state.step, metrics, "train")


def _with_last(it) -> Iterator[tuple[int, Any, bool]]:
    """(index, item, whether it is the last) of an iterator, looking one item ahead."""
    it = iter(it)
    nxt = next(it, _END)
    i = 0
    while nxt is not _END:
        cur, nxt = nxt, next(it, _END)
        yield i, cur, nxt is _END
        i += 1


_END = object()


def run_epoch(w: _Worker, train_shard, loss_fn: MERLLoss) -> bool:
    """Train through the rest of ``state.epoch``; True when ``max_steps`` is reached.

    A resumed epoch skips as many micro-batches as were consumed before its checkpoint (the
    same count, not the same rows: the epoch's order is drawn anew). Mid-epoch checkpoints
    (``every_n_steps``) carry training metrics only, no validation score; none is written on
    an epoch's last step, where the validated end-of-epoch one is written.
    """
    cfg, state, stepper = w.cfg, w.state, w.stepper
    max_steps = cfg.train.max_steps
    skip = state.batch_in_epoch
    it = train_shard.iter_torch_batches(
        batch_size=cfg.data.batch_size, collate_fn=w.collate, drop_last=True, device=w.device,
        prefetch_batches=cfg.data.prefetch, **iter_shuffle_options(cfg.data, cfg.train.seed, state.epoch),
    )
    done = False
    for i, batch, last in _with_last(it):
        if i < skip:
            continue  # consumed before the checkpoint this run resumed from
        batch = to_device(batch, w.device)
        out = stepper.forward(batch["ecg"], batch["input_ids"], batch["attention_mask"], batch.get("lead_mask"))
        loss = loss_fn(out)
        stepped = stepper.backward_step(loss.total)
        state.batch_in_epoch = i + 1
        state.samples_seen += len(batch["ecg"]) * w.world
        w.n_last += len(batch["ecg"]) * w.world
        if not stepped:
            continue
        state.step += 1
        _maybe_test_crash(w.crash_hook, w.rank, state.step)
        train_metrics = {"loss": float(loss.total.detach()), "loss_clip": float(loss.clip), "loss_uni": float(loss.uni),
                         "train_top1": loss.top1, "train_top5": loss.top5, "lr": stepper.lr(),
                         "temperature": float(1.0 / out["logit_scale"].detach().float().clamp(max=MAX_LOGIT_SCALE).exp())}
        if state.step % cfg.train.log_every == 0:
            _log_train(w, train_metrics)
        done = max_steps is not None and state.step >= max_steps
        if cfg.checkpoint.every_n_steps and state.step % cfg.checkpoint.every_n_steps == 0 and not (done or last):
            report(w, train_metrics, with_checkpoint=True)  # at an epoch's end, the validated one follows
        if done:
            break
    if not done:
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return done


def validate_epoch(w: _Worker, val_shard) -> dict[str, float]:
    """Held-out loss/retrieval and zero-shot AUC after an epoch; updates the best score.

    The checkpoint score is ``val_zeroshot_auc`` when zero-shot tasks are configured, else
    ``-val_loss``.
    """
    cfg, state = w.cfg, w.state
    val = validate(w.stepper, val_shard, w.collate, cfg, w.device) if val_shard is not None else {}
    val.update(zeroshot_validation(w.stepper, cfg, w.device))
    if val:
        score = val.get("val_zeroshot_auc", -val.get("val_loss", float("inf")))
        state.best_score = score if state.best_score is None else max(state.best_score, score)
        val[SCORE] = score
        if w.rank == 0:
            log.info("validation after epoch %d step %d: %s", state.epoch, state.step,
                     ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
        w.metrics_log.log(state.step, val, "val")
    return val


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. ``config``: {"cfg": TrainConfig as dict, "run_dir": str, "init_checkpoint":
    str | None, "tracking": the tracking record or None, "test_crash_once": ...}."""
    import ray.train
    import ray.train.torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig.model_validate(config["cfg"])
    run_dir = config.get("run_dir")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    seed_everything(cfg.train.seed, rank)

    stepper, state = restore(cfg, run_dir, rank, world, device, config.get("init_checkpoint"))
    w = _Worker(cfg, rank, world, device, stepper, state, MetricsLogger(run_dir, rank, config.get("tracking")),
                Collate(pad_id_for(cfg.model.text_model)), crash_hook=config.get("test_crash_once"))
    loss_fn = MERLLoss(cfg.loss.weight_clip, cfg.loss.weight_uni)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if cfg.data.val_split else None
    done = cfg.train.max_steps is not None and state.step >= cfg.train.max_steps
    stepper.module.train()
    w.t_last = time.perf_counter()
    while state.epoch < cfg.train.epochs and not done:
        done = run_epoch(w, train_shard, loss_fn)
        val = validate_epoch(w, val_shard)
        report(w, {**val, "lr": stepper.lr()}, with_checkpoint=True)
    w.metrics_log.close()
