"""Self-contained inference bundle: weights + config + tokenizer + text-model config.

``save_bundle`` writes a folder that loads offline anywhere (no hub, no training code
paths): ``model.safetensors``, ``train_config.json``, ``text_model/`` (tokenizer files,
the HF model config, and ``merl_source.json``: the text model's original name, since
``train_config.json`` points at the bundle's own copy), and ``source.json`` where the
weights came from elsewhere (e.g. ``merl import-reference``). ``load_bundle`` rebuilds the
model from those alone.

``train_config.json`` is written last and is what marks a folder as a bundle. At a URI
(``s3://...``) the bundle is built in a local temporary folder and uploaded file by file,
that marker last (and removed first when replacing a bundle); loading downloads it first,
since safetensors and Hugging Face read local files.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from merl.core.io import atomic_write_text, download_dir, is_file, local_copy, upload_dir
from merl.core.uri import is_uri, join, local_path
from merl.training.config import TrainConfig

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "train_config.json"
TEXT_DIR = "text_model"
SOURCE = "source.json"
TEXT_SOURCE = "merl_source.json"  # in TEXT_DIR: {"text_model": the name or path it was built from}


def text_model_source(name_or_path: str) -> str:
    """The original name of a text model; a bundle's ``text_model/`` copy answers with the name
    it was made from, so re-exports keep it."""
    p = Path(name_or_path) / TEXT_SOURCE
    if p.is_file():
        return str(json.loads(p.read_text()).get("text_model", name_or_path))
    return name_or_path


@dataclass
class Bundle:
    model: torch.nn.Module
    tokenizer: Any
    config: TrainConfig
    info: dict[str, Any] = field(default_factory=dict)  # source.json: provenance of imported weights
    text_model: str = ""  # the text model's original name or path (config.model.text_model is the bundle's copy)


def save_bundle(model: torch.nn.Module, cfg: TrainConfig, out_dir: str | Path,
                info: dict[str, Any] | None = None) -> Path | str:
    """Write an inference bundle for ``model`` (a :class:`MERLModel`) trained with ``cfg``;
    ``info`` (provenance) goes to ``source.json``.

    Returns the bundle folder: a local Path, or the URI it was uploaded to."""
    if is_uri(out_dir):
        with tempfile.TemporaryDirectory(prefix="merl-bundle-") as tmp:
            save_bundle(model, cfg, Path(tmp) / "bundle", info=info)
            upload_dir(Path(tmp) / "bundle", str(out_dir), last=[CONFIG])  # prunes a stale source.json
        log.info("uploaded inference bundle to %s", out_dir)
        return str(out_dir)
    from safetensors.torch import save_file

    from merl.core.textmodel import load_tokenizer, resolve_text_model

    out = Path(local_path(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    text_dir = out / TEXT_DIR
    load_tokenizer(cfg.model.text_model).save_pretrained(text_dir)
    from transformers import AutoConfig

    AutoConfig.from_pretrained(resolve_text_model(cfg.model.text_model)).save_pretrained(text_dir)
    atomic_write_text(text_dir / TEXT_SOURCE, json.dumps({"text_model": text_model_source(cfg.model.text_model)}))
    bundled = cfg.model_copy(deep=True)
    bundled.model.text_model = TEXT_DIR  # relative: resolved against the bundle on load
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    if info:
        atomic_write_text(out / SOURCE, json.dumps(info, indent=2))
    else:  # a re-export over an imported bundle must not keep its provenance
        (out / SOURCE).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG, bundled.model_dump_json(indent=2))
    log.info("wrote inference bundle %s", out)
    return out


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path,
                      untrained_seed: int | None = None) -> Path | str:
    """Training checkpoint (see :mod:`merl.training.checkpoint`; local or a URI) -> inference bundle.

    With ``untrained_seed``: the control model instead, built from the checkpoint's config as
    training starts (random-init ECG tower and projections seeded by it, the text tower's
    pretrained weights) and none of the checkpoint's weights; ``source.json`` says so."""
    import torch

    from merl.training.checkpoint import load_checkpoint
    from merl.training.model import build_model
    from merl.training.model.leads import fill_missing_absence

    with local_copy(checkpoint_dir) as local:
        ckpt = load_checkpoint(local)
    if ckpt.config is None:
        raise FileNotFoundError(f"{checkpoint_dir}: checkpoint has no config.json; cannot rebuild the model")
    cfg = TrainConfig.model_validate(ckpt.config)
    if untrained_seed is not None:
        torch.manual_seed(untrained_seed)
        model = build_model(cfg.model, cfg.loss)
        return save_bundle(model, cfg, out_dir, info={"untrained": True, "seed": untrained_seed,
                                                      "config_from": str(checkpoint_dir)})
    model = build_model(cfg.model, cfg.loss, pretrained_text=False)
    model.load_state_dict(fill_missing_absence(model, ckpt.weights))
    return save_bundle(model, cfg, out_dir)


def load_bundle(path: str | Path, device: str = "cpu") -> Bundle:
    """Load a bundle written by :func:`save_bundle` (offline; weights via safetensors).

    A bundle at a URI is downloaded to a temporary folder that lives as long as the Bundle
    (its ``config.model.text_model`` points there)."""
    if is_uri(path):
        if not is_file(join(path, CONFIG)):
            raise FileNotFoundError(f"{path} is not a merl model bundle (no {CONFIG}); create one with `merl export`")
        tmp = tempfile.mkdtemp(prefix="merl-bundle-")
        try:
            bundle = load_bundle(download_dir(str(path), Path(tmp) / "bundle"), device)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        weakref.finalize(bundle, shutil.rmtree, tmp, True)
        return bundle
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from merl.training.model import build_model
    from merl.training.model.leads import fill_missing_absence

    root = Path(local_path(path))
    if not (root / CONFIG).is_file() or not (root / WEIGHTS).is_file():
        raise FileNotFoundError(f"{root} is not a merl model bundle (needs {CONFIG} and {WEIGHTS}); "
                                "create one with `merl export`")
    cfg = TrainConfig.model_validate(json.loads((root / CONFIG).read_text()))
    local = cfg.model_copy(deep=True)
    local.model.text_model = str(root / TEXT_DIR)
    model = build_model(local.model, local.loss, pretrained_text=False)
    model.load_state_dict(fill_missing_absence(model, load_file(str(root / WEIGHTS))))
    model.to(device).eval()
    info = json.loads((root / SOURCE).read_text()) if (root / SOURCE).is_file() else {}
    return Bundle(model=model, tokenizer=AutoTokenizer.from_pretrained(str(root / TEXT_DIR)), config=local, info=info,
                  text_model=text_model_source(str(root / TEXT_DIR)))
