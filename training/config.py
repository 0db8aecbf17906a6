"""The pretraining config (`configs/pretrain_*.yaml`): one validated schema for every knob.

Defaults are laptop-sized (100 Hz x 1000 samples, 2 CPU workers, DDP) with this project's
``merl-ray`` architecture; the ``paper`` preset, the reference's method, is
`configs/pretrain_paper.yaml` (= :func:`paper_config` + run settings; docs/fidelity.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from merl.core.config import StrictModel
from merl.training.data.config import DataConfig


class ModelConfig(StrictModel):
    arch: Literal["merl-ray", "paper"] = Field(
        "merl-ray",
        description="ECG tower and heads: 'paper' = the reference's (ResNet stem without max-pool, 1x1 downconv "
                    "+ learned-query attention pool; ViT without CLS, mean + LayerNorm, head ending in BatchNorm; "
                    "bias-free uni-modal views); 'merl-ray' = this project's variant (docs/fidelity.md)",
    )
    ecg_encoder: str = Field("resnet18", description="resnet18|34|50|101 or vit_tiny|small|middle|base")
    width: int = Field(64, ge=8, description="ResNet stem width (64 = MERL); smaller for tests")
    text_model: str = Field("default", description="HF name or local path; 'default' = bundled MiniLM")
    text_pooling: Literal["mean", "pooler"] = Field(
        "mean", description="text embedding: mean over tokens, or the model's pooler output (reference: pooler)"
    )
    freeze_text_layers: int | Literal["all"] = Field(
        4, description="first N transformer layers (and embeddings) frozen; 'all' = the whole text model (reference)"
    )
    text_cache: bool = Field(
        False, description="with freeze_text_layers=all: compute each report's text features once per worker (eval "
                           "mode) and reuse them every later epoch; most of a CPU step is the text forward pass "
                           "(reference: recomputed each step, with its frozen LM's dropout)",
    )
    proj_dim: int = Field(256, ge=8, description="shared embedding size")
    proj_hidden: int = Field(256, ge=8, description="hidden size of the projection MLPs")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout producing the two uni-modal ECG views")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if isinstance(self.freeze_text_layers, int) and self.freeze_text_layers < 0:
            raise ValueError("model.freeze_text_layers must be >= 0 or 'all'")
        if self.text_cache and self.freeze_text_layers != "all":
            raise ValueError("model.text_cache needs model.freeze_text_layers=all (a trained text layer changes "
                             "the features every step)")
        if self.arch == "paper" and self.ecg_encoder.startswith("resnet") and self.proj_dim % 4:
            raise ValueError(f"model.arch=paper pools ResNet features with 4 attention heads: "
                             f"model.proj_dim ({self.proj_dim}) must be a multiple of 4")
        return self


class LossConfig(StrictModel):
    temperature: float = Field(0.07, gt=0.0, description="initial softmax temperature")
    learnable: bool = Field(True, description="learn the logit scale (clamped to <= 100)")
    weight_clip: float = Field(1.0, ge=0.0, description="weight of the cross-modal (ECG-report) loss")
    weight_uni: float = Field(1.0, ge=0.0, description="weight of the uni-modal (two dropout views) loss")


class OptimConfig(StrictModel):
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-8, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    T_0: int = Field(5000, ge=1, description="CosineAnnealingWarmRestarts period (optimizer steps)")
    eta_min: float = Field(1e-8, ge=0.0)
    warmup_steps: int = Field(0, ge=0, description="linear warmup before the cosine schedule")
    grad_clip: float = Field(0.0, ge=0.0, description="max grad norm; 0 = off")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")


class RunConfigSection(StrictModel):
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    seed: int = 42
    num_workers: int = Field(2, ge=1, description="Ray Train workers")
    use_gpu: bool = False
    backend: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage (3 also partitions the weights)")
    deepspeed: dict[str, Any] = Field(
        default_factory=dict,
        description="merged over the generated DeepSpeed config (offload, bucket sizes, ...); "
        "batch size, accumulation, clipping, precision, ZeRO stage, optimizer and scheduler come from the other fields",
    )
    bf16: Literal["auto", "native", "on", "off"] = Field(
        "auto", description="auto = bf16 on GPU only; native = also on a CPU with bf16 instructions (AVX512-BF16 "
        "or AMX), where it about halves a step; on = always (slow where the CPU emulates bf16)"
    )
    log_every: int = Field(10, ge=1, description="progress line every N steps")
    cpus_per_worker: float = Field(
        0.5, gt=0.0, description="CPUs reserved per worker; leave some free for the Ray Data tasks feeding them"
    )


    @field_validator("bf16", mode="before")
    @classmethod
    def _yaml_switch(cls, v: Any) -> Any:
        """YAML reads a bare ``on``/``off`` as a boolean: take it as the switch it was written as."""
        return ("on" if v else "off") if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _deepspeed_keys(self) -> RunConfigSection:
        owned = {k: v for k, v in _DS_OWNED.items() if k in self.deepspeed}
        stage = self.deepspeed.get("zero_optimization", {})
        if isinstance(stage, dict) and "stage" in stage:
            owned["zero_optimization.stage"] = "train.zero_stage"
        if owned:
            raise ValueError("train.deepspeed must not set " + ", ".join(f"{k} (use {v})" for k, v in owned.items()))
        return self


# DeepSpeed keys derived from other fields (two sources for one setting would disagree on resume).
_DS_OWNED = {
    "train_batch_size": "data.batch_size", "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "optim.grad_accum", "gradient_clipping": "optim.grad_clip",
    "bf16": "train.bf16", "fp16": "train.bf16", "optimizer": "the optim section", "scheduler": "the optim section",
}


class CheckpointSection(StrictModel):
    storage_path: str = Field("runs", description="local dir or URI (s3://, gs://, ...) Ray Train persists to")
    every_n_steps: int = Field(0, ge=0, description="checkpoint every N optimizer steps; 0 = end of epoch only")
    keep: int = Field(3, ge=1, description="checkpoints kept (best by score + the latest)")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the latest checkpoint; -1 = unlimited")


class EvalSection(StrictModel):
    tasks: list[str] = Field(default_factory=list, description="zero-shot validation task names")
    shards: dict[str, str] = Field(default_factory=dict, description="task name -> shard folder")
    prompts: str | None = Field(None, description="JSON {class: prompt} (or {task: {class: prompt}})")
    split: str = "val"
    batch_size: int = Field(64, ge=1)
    max_prompt_tokens: int | None = Field(
        None, ge=8, description="tokens of each class prompt encoded; None = the text model's maximum "
                                "(never data.max_text_tokens: prompts are longer than reports)",
    )

    @model_validator(mode="after")
    def _shards_for_tasks(self) -> EvalSection:
        missing = [t for t in self.tasks if t not in self.shards]
        if missing:
            raise ValueError(f"eval.shards has no shard folder for task(s) {missing}")
        return self


class TrackingConfig(StrictModel):
    """Experiment tracking of a run (``merl train``) or a search (``merl tune``).

    MLflow by default, in an embedded local store (no server): ``uri`` a folder holding an
    SQLite database and the artifacts (``mlflow ui --backend-store-uri sqlite:///runs/mlruns/mlflow.db``).
    Any MLflow tracking URI (``http://host:5000``, ``databricks``, ``sqlite:///...``) logs to
    that server instead. ``wandb`` needs the ``wandb`` package and its login.
    """

    backend: Literal["mlflow", "wandb", "none"] = Field("mlflow", description="mlflow | wandb | none")
    uri: str = Field("runs/mlruns", description="MLflow: a folder (embedded store) or a tracking URI")
    experiment: str | None = Field(None, description="MLflow experiment / W&B project (default: merl-train, "
                                                     "or the search's name for merl tune)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``tracking: none`` (or ``tracking=none`` on the command line) = ``tracking: {backend: none}``."""
        return {"backend": data} if isinstance(data, str) else data


class TrainConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: RunConfigSection = Field(default_factory=RunConfigSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _cache_without_zero3(self) -> TrainConfig:
        if self.model.text_cache and self.train.backend == "deepspeed" and self.train.zero_stage == 3:
            raise ValueError("model.text_cache cannot run under ZeRO-3: a worker computing a new report's features "
                             "alone would wait for the others to gather the text weights (use zero_stage <= 2)")
        return self


REFERENCE_TEXT_MODEL = "ncbi/MedCPT-Query-Encoder"


def paper_config(ecg_encoder: str = "resnet18", text_model: str = REFERENCE_TEXT_MODEL) -> TrainConfig:
    """The reference's model, input and loss settings: ``configs/pretrain_paper.yaml`` holds the
    same (a test keeps them equal) and ``merl import-reference`` writes them into its bundles.
    Rows in MIMIC-IV-ECG's lead order, as the reference's models take them. Loss weights 2:
    the reference sums its two cross-entropy directions, ``clip_loss`` averages them."""
    return TrainConfig(
        model=ModelConfig(arch="paper", ecg_encoder=ecg_encoder, width=64, text_model=text_model,
                          text_pooling="pooler", freeze_text_layers="all", proj_dim=256, proj_hidden=256, dropout=0.1),
        data=DataConfig(fs=500, n_samples=5000, normalize="minmax_record", lead_order="mimic", max_text_tokens=256),
        loss=LossConfig(temperature=0.07, learnable=False, weight_clip=2.0, weight_uni=2.0),
    )
