"""``train_loop_per_worker``: the one MERL training loop, for both DDP and DeepSpeed.

Runs inside each Ray Train worker. Backend-specific code is limited to wrapping the model
(:class:`_DDPStepper` / :class:`_DeepSpeedStepper`, both a :class:`Stepper`: input dtype,
backward, accumulation, clipping, step) and to where optimizer state lives; data, loss,
validation, logging and checkpointing are shared, so both backends train (and resume) the
same way. The loop is :func:`restore`, then per epoch :func:`run_epoch`,
:func:`validate_epoch` and :func:`report` (which also checkpoints).
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from merl.training.checkpoint import LoadedCheckpoint, TrainState, list_checkpoints, load_latest_valid, write_checkpoint
from merl.training.config import TrainConfig
from merl.training.data.loader import Collate, pad_id_for
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


def use_bf16(cfg: TrainConfig) -> bool:
    return cfg.train.bf16 == "on" or (cfg.train.bf16 == "auto" and cfg.train.use_gpu and torch.cuda.is_available())


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict derived from TrainConfig (optimizer/scheduler are passed as objects)."""
    return {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "train_batch_size": cfg.data.batch_size * cfg.optim.grad_accum * world_size,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.train.zero_stage},
        "bf16": {"enabled": use_bf16(cfg)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class Stepper(Protocol):
    """What the loop needs from a backend, so no code outside the two steppers asks which one it has.

    ``module`` is the unwrapped ``MERLModel`` (validation, checkpoint weights); ``sharded``
    says each rank saves its own optimizer partition (DeepSpeed ZeRO) rather than rank 0 one
    full state (DDP).
    """

    module: torch.nn.Module
    scheduler: Any
    sharded: bool

    def cast_input(self, ecg: torch.Tensor) -> torch.Tensor:
        """The ECG batch in the dtype the engine's weights expect (bf16 under DeepSpeed bf16)."""
        ...

    def forward(self, ecg: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def backward_step(self, loss: torch.Tensor) -> bool:
        """Backward one micro-batch; True when that completed an optimizer step."""
        ...

    def lr(self) -> float: ...

    def optimizer_state(self) -> dict: ...

    def load_optimizer(self, ckpt: LoadedCheckpoint) -> None: ...


class _DDPStepper:
    sharded = False

    def __init__(self, model, cfg: TrainConfig):
        import ray.train.torch

        self.cfg = cfg
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        self.model = ray.train.torch.prepare_model(model)
        self.module = self.model.module if hasattr(self.model, "module") else self.model
        self.micro = 0
        self.autocast = use_bf16(cfg)

    def cast_input(self, ecg):
        return ecg  # fp32 weights; bf16 comes from autocast inside forward only

    def forward(self, ecg, ids, mask):
        with torch.autocast(ecg.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.model(self.cast_input(ecg), ids, mask)

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

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer(self, ckpt: LoadedCheckpoint) -> None:
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        else:
            log.warning("checkpoint %s has no DDP optimizer state (saved by DeepSpeed): Adam moments restart", ckpt.path)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


class _DeepSpeedStepper:
    sharded = True

    def __init__(self, model, cfg: TrainConfig, world_size: int):
        import deepspeed

        self.cfg = cfg
        optimizer, scheduler = build_optimizer(model, cfg)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(cfg, world_size), dist_init_required=False,
        )
        self.module = self.engine.module
        self.bf16 = use_bf16(cfg)
        self.world_size = world_size

    def cast_input(self, ecg):
        return ecg.to(torch.bfloat16) if self.bf16 else ecg  # the engine holds bf16 weights, no autocast

    def forward(self, ecg, ids, mask):
        return self.engine(self.cast_input(ecg), ids, mask)

    def backward_step(self, loss) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)
        self.engine.step()  # DeepSpeed accumulates, clips, steps optimizer + scheduler at boundaries
        return boundary

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer(self, ckpt: LoadedCheckpoint) -> None:
        shards = ckpt.optimizer_shards
        try:
            if shards and "ds_version" in shards[0]:
                if len(shards) != self.world_size:
                    raise ValueError(f"saved by {len(shards)} ranks, resuming with {self.world_size}")
                self.optimizer.load_state_dict(shards, load_from_fp32_weights=False)
            elif shards:
                self.optimizer.load_state_dict(shards[0])
            elif ckpt.optimizer is not None and self.cfg.train.zero_stage == 0:
                self.optimizer.load_state_dict(ckpt.optimizer)
            else:
                raise ValueError("no optimizer state this backend can read")
        except (ValueError, KeyError, RuntimeError, AssertionError) as e:
            log.warning("optimizer state of %s not restored (%s): Adam moments restart", ckpt.path, e)

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
    module = stepper.module
    module.eval()
    losses, ecg_embs, txt_embs, reports = [], [], [], []
    for batch in shard.iter_torch_batches(batch_size=cfg.data.batch_size, collate_fn=collate, device=device):
        ecg = stepper.cast_input(batch["ecg"])
        out = module(ecg, batch["input_ids"], batch["attention_mask"])
        losses.append((float(clip_loss(out["ecg"], out["text"], out["logit_scale"], gather=False)[0]), len(ecg)))
        ecg_embs.append(out["ecg"].float().cpu())
        txt_embs.append(out["text"].float().cpu())
        reports += batch["report"]
    module.train()
    parts = _all_gather_objects((
        torch.cat(ecg_embs) if ecg_embs else torch.zeros(0, cfg.model.proj_dim),
        torch.cat(txt_embs) if txt_embs else torch.zeros(0, cfg.model.proj_dim),
        reports, losses))
    ecg_all = torch.cat([p[0] for p in parts])
    txt_all = torch.cat([p[1] for p in parts])
    rep_all = [r for p in parts for r in p[2]]
    loss_n = [x for p in parts for x in p[3]]
    if not rep_all:
        return {}
    acc = retrieval_accuracy(ecg_all, txt_all, rep_all)
    n = sum(c for _, c in loss_n)
    return {"val_loss": sum(v * c for v, c in loss_n) / n, "val_top1": acc[1], "val_top5": acc[5],
            "val_n": len(rep_all), "val_distinct_reports": len(set(rep_all))}


def zeroshot_validation(module, cfg: TrainConfig, device) -> dict[str, float]:
    """Mean macro AUC over ``cfg.eval.tasks`` (rank 0 computes, every rank gets the value).

    Scored by :func:`merl.training.zeroshot.score_split`, the path ``merl evaluate`` uses,
    so the metric that ranks checkpoints is the one the benchmark reports.
    """
    if not cfg.eval.tasks:
        return {}
    value = None
    if not dist.is_initialized() or dist.get_rank() == 0:
        from merl.training.data.loader import _tokenizer
        from merl.training.metrics import task_metrics
        from merl.training.zeroshot import load_prompts, score_split

        module.eval()
        aucs = {}
        for task in cfg.eval.tasks:
            prompts = load_prompts(cfg.eval.prompts, task) if cfg.eval.prompts else None
            s = score_split(module, _tokenizer(cfg.model.text_model), task, cfg.eval.shards[task], cfg.data,
                            prompts=prompts, split=cfg.eval.split, batch_size=cfg.eval.batch_size, device=str(device))
            aucs[f"val_zeroshot_auc_{task}"] = float(task_metrics(s.y, s.scores, s.labels).macro_auc)
        module.train()
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

    Weights load before the backend wraps the model (DeepSpeed copies them into its engine);
    optimizer and scheduler state after, into what the backend built. Reseeding by step
    makes a resumed run draw as the uninterrupted one would have. Temperature and learning
    rate follow this config when the checkpoint's differ (:func:`apply_config_hparams`).
    """
    resumed = _resume(run_dir, tempfile.mkdtemp(prefix="merl-ckpt-"), init_checkpoint)
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
    stepper: Stepper = (_DeepSpeedStepper(model, cfg, world) if cfg.train.backend == "deepspeed"
                        else _DDPStepper(model.to(device), cfg))
    if resumed is not None:
        stepper.load_optimizer(resumed)
        if resumed.scheduler is not None:
            stepper.scheduler.load_state_dict(resumed.scheduler)
        apply_config_lr(stepper, cfg, resumed.config)
        if rank == 0:
            log.info("resumed from %s at epoch %d step %d (lr %.3g)", resumed.path, state.epoch, state.step, stepper.lr())
    return stepper, state


def report(w: _Worker, metrics: dict[str, Any], with_checkpoint: bool) -> None:
    """``ray.train.report`` the metrics, with a checkpoint unless this step already has one.

    Every rank reports (Ray Train requires it); DeepSpeed ranks each save their optimizer
    partition, DDP only rank 0 (weights always from rank 0).
    """
    import ray.train
    from ray.train import Checkpoint

    state, stepper = w.state, w.stepper
    metrics = {**metrics, "step": state.step, "epoch": state.epoch, "samples_seen": state.samples_seen}
    score = state.best_score if state.best_score is not None else NO_SCORE
    metrics[SCORE] = metrics.get(SCORE, score)
    if not with_checkpoint or state.step == w.last_saved:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="merl-ckpt-out-") as tmp:
        write_checkpoint(tmp, rank=w.rank, state=state, model=stepper.module if w.rank == 0 else None,
                         optimizer_state=stepper.optimizer_state() if (stepper.sharded or w.rank == 0) else None,
                         sharded_optimizer=stepper.sharded, scheduler_state=stepper.scheduler.state_dict(),
                         config_json=w.cfg.model_dump_json(indent=2))
        ckpt = Checkpoint.from_directory(tmp) if (stepper.sharded or w.rank == 0) else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"checkpoint_step{state.step:08d}")
    w.last_saved = state.step


def _log_train(w: _Worker, metrics: dict[str, float]) -> None:
    """Every ``log_every`` steps: throughput since the last line, progress line, metric sinks."""
    state = w.state
    dt = time.perf_counter() - w.t_last
    metrics["samples_per_s"] = w.n_last / dt if dt > 0 else 0.0
    w.t_last, w.n_last = time.perf_counter(), 0
    if w.rank == 0:
        log.info("epoch %d step %d loss %.4f (clip %.4f uni %.4f) top1 %.2f lr %.3g | %.1f samples/s",
                 state.epoch, state.step, metrics["loss"], metrics["loss_clip"], metrics["loss_uni"],
                 metrics["train_top1"], metrics["lr"], metrics["samples_per_s"])
    w.metrics_log.log(state.step, metrics, "train")


def run_epoch(w: _Worker, train_shard, loss_fn: MERLLoss, last_val: dict[str, float]) -> bool:
    """Train through the rest of ``state.epoch``; True when ``max_steps`` is reached.

    A resumed epoch skips the micro-batches consumed before its checkpoint. Mid-epoch
    checkpoints (``every_n_steps``) carry the latest validation metrics.
    """
    cfg, state, stepper = w.cfg, w.state, w.stepper
    max_steps = cfg.train.max_steps
    skip = state.batch_in_epoch
    it = train_shard.iter_torch_batches(
        batch_size=cfg.data.batch_size, collate_fn=w.collate, drop_last=True, device=w.device,
        prefetch_batches=cfg.data.prefetch, local_shuffle_buffer_size=cfg.data.batch_size * 4,
        local_shuffle_seed=cfg.train.seed + state.epoch,
    )
    done = False
    for i, batch in enumerate(it):
        if i < skip:
            continue  # consumed before the checkpoint this run resumed from
        out = stepper.forward(batch["ecg"], batch["input_ids"], batch["attention_mask"])
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
        if cfg.checkpoint.every_n_steps and state.step % cfg.checkpoint.every_n_steps == 0 and not done:
            report(w, {**train_metrics, **last_val}, with_checkpoint=True)
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
    val.update(zeroshot_validation(w.stepper.module, cfg, w.device))
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
    last_val: dict[str, float] = {}
    done = cfg.train.max_steps is not None and state.step >= cfg.train.max_steps
    stepper.module.train()
    w.t_last = time.perf_counter()
    while state.epoch < cfg.train.epochs and not done:
        done = run_epoch(w, train_shard, loss_fn, last_val)
        last_val = validate_epoch(w, val_shard)
        report(w, {**last_val, "lr": stepper.lr()}, with_checkpoint=True)
    w.metrics_log.close()
