"""MERL's released checkpoints (github cheliu-computation/MERL) -> this project's export bundle.

The reference saves its whole model (``<encoder>_ckpt.pth``: ECG encoder, pooling/projection
heads, ``linear1``/``linear2``, ``proj_t`` and the MedCPT text model as ``lm_model.*``) and the
ECG encoder alone (``<encoder>_encoder.pth``). :func:`convert_state_dict` renames every key
to the ``model.arch: paper`` layout (:func:`merl.training.config.paper_config`), checks every
shape, and fails if a key is left over or a weight is missing; the only key dropped is the ResNets' 10-class
classifier ``ecg_encoder.linear.*``, which the reference never calls. The file is read with
``torch.load(weights_only=True)``: tensors only, never arbitrary pickled objects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from merl.core.config import ConfigError
from merl.training.config import REFERENCE_TEXT_MODEL, paper_config
from merl.training.model.ecg_resnet import DEPTHS
from merl.training.model.ecg_vit import SIZES
from merl.training.model.registry import ECG_ENCODERS

log = logging.getLogger(__name__)

DROPPED = re.compile(r"^ecg_encoder\.linear\.(weight|bias)$")  # the ResNets' unused classifier
_POSITION_IDS = "lm_model.embeddings.position_ids"  # a buffer older transformers saved; rebuilt on load


class CheckpointLayoutError(ConfigError):
    """The file is not a MERL reference checkpoint of the requested encoder (one-line message)."""


# (reference key pattern, our key template, reshape to the target's shape allowed)
_Rule = tuple[re.Pattern, Callable[[re.Match], str], bool]


def _rule(pattern: str, template: str | Callable[[re.Match], str], reshape: bool = False) -> _Rule:
    fn = template if callable(template) else (lambda m, t=template: m.expand(t))
    return re.compile(pattern), fn, reshape


def _resnet_stage(m: re.Match) -> str:
    stage, block, rest = int(m[1]) - 1, m[2], m[3]
    rest = re.sub(r"^shortcut\.", "down.", rest)
    return f"ecg_encoder.backbone.stages.{stage}.{block}.{rest}"


_RESNET_ENCODER = [
    _rule(r"^ecg_encoder\.conv1\.weight$", "ecg_encoder.backbone.stem.0.weight"),
    _rule(r"^ecg_encoder\.bn1\.(\w+)$", r"ecg_encoder.backbone.stem.1.\1"),
    _rule(r"^ecg_encoder\.layer([1-4])\.(\d+)\.((?:conv[123]|bn[123]|shortcut\.[01])\.\w+)$", _resnet_stage),
]
_RESNET_HEADS = [
    _rule(r"^downconv\.(weight|bias)$", r"ecg_encoder.downconv.\1"),
    _rule(r"^att_pool_head\.positional_embedding$", "ecg_encoder.pool.pos"),
    _rule(r"^att_pool_head\.cls_token$", "ecg_encoder.pool.query"),
    _rule(r"^att_pool_head\.mhsa\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$",
          r"ecg_encoder.pool.attn.\1"),
    _rule(r"^att_pool_head\.c_proj\.(weight|bias)$", r"ecg_encoder.pool.proj.\1"),
]
_VIT_BLOCK = {"attn.norm": "norm1", "attn.fn.to_qkv.weight": "self_attn.in_proj_weight",
              "attn.fn.to_qkv.bias": "self_attn.in_proj_bias", "attn.fn.to_out.0": "self_attn.out_proj",
              "ff.norm": "norm2", "ff.fn.net.0": "linear1", "ff.fn.net.3": "linear2"}


def _vit_block(m: re.Match) -> str:
    part, tail = m[2], m[3] or ""
    return f"ecg_encoder.blocks.layers.{m[1]}.{_VIT_BLOCK[part]}{tail}"


_VIT_ENCODER = [
    _rule(r"^ecg_encoder\.to_patch_embedding\.weight$", "ecg_encoder.patch.weight"),
    _rule(r"^ecg_encoder\.pos_embedding$", "ecg_encoder.pos", reshape=True),  # [1, N, C] -> [N, C]
    _rule(r"^ecg_encoder\.block(\d+)\.(attn\.fn\.to_qkv\.weight|attn\.fn\.to_qkv\.bias)()$", _vit_block),
    _rule(r"^ecg_encoder\.block(\d+)\.(attn\.norm|attn\.fn\.to_out\.0|ff\.norm|ff\.fn\.net\.0|ff\.fn\.net\.3)"
          r"(\.weight|\.bias)$", _vit_block),
    _rule(r"^ecg_encoder\.norm\.(weight|bias)$", r"ecg_encoder.norm.\1"),
]
_VIT_HEADS = [
    _rule(r"^proj_e\.([0134])\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r"ecg_proj.net.\1.\2"),
]
_SHARED_HEADS = [
    _rule(r"^linear([12])\.weight$", r"view\1.linear.weight"),
    _rule(r"^proj_t\.([02])\.(weight|bias)$", r"text_proj.net.\1.\2"),
    _rule(r"^lm_model\.(.+)$", r"text_encoder.model.\1"),
]


def _rules(encoder: str, encoder_only: bool) -> list[_Rule]:
    enc = _RESNET_ENCODER if encoder in DEPTHS else _VIT_ENCODER
    if encoder_only:
        return enc
    return enc + (_RESNET_HEADS if encoder in DEPTHS else _VIT_HEADS) + _SHARED_HEADS


def target_prefixes(encoder: str, encoder_only: bool) -> tuple[str, ...]:
    """Our state-dict keys a (whole-model or encoder-only) reference file must fill."""
    if encoder_only:
        return ("ecg_encoder.backbone.",) if encoder in DEPTHS else ("ecg_encoder.",)
    return ("ecg_encoder.", "ecg_proj.", "view1.", "view2.", "text_proj.", "text_encoder.")


def guess_encoder(keys: Mapping[str, tuple[int, ...]]) -> str | None:
    """Which reference ECG encoder a state dict (key -> shape) holds, from its key names and shapes."""
    enc = {k.removeprefix("ecg_encoder."): s for k, s in keys.items()}
    patch = enc.get("to_patch_embedding.weight")
    if patch is not None:
        by_width = {dim: name for name, (dim, *_) in SIZES.items()}
        return by_width.get(patch[0])
    if "conv1.weight" in enc and "bn1.weight" in enc:
        bottleneck = any(re.match(r"layer\d\.\d+\.conv3\.", k) for k in enc)
        n3 = 1 + max((int(m[1]) for k in enc if (m := re.match(r"layer3\.(\d+)\.", k))), default=-1)
        for name, (block, layers) in DEPTHS.items():
            if layers[2] == n3 and (block.expansion == 4) == bottleneck:
                return name
    return None


def load_reference_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a reference ``.pth`` (``torch.load(weights_only=True)``); a training
    checkpoint's ``model_state_dict`` and DDP's ``module.`` prefix are unwrapped. ``path``:
    local or a URI (read into memory)."""
    import io

    from merl.core.io import is_file, read_bytes
    from merl.core.uri import is_uri, local_path

    p = str(path)
    if not is_file(p):
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(io.BytesIO(read_bytes(p)) if is_uri(p) else local_path(p), map_location="cpu",
                         weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointLayoutError(f"{p}: not a tensor-only PyTorch checkpoint "
                                    f"(torch.load(weights_only=True) failed: {first})") from None
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointLayoutError(f"{p}: not a state dict (expected a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def convert_state_dict(ref: Mapping[str, torch.Tensor], encoder: str, target: Mapping[str, torch.Tensor], *,
                       encoder_only: bool = False, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Reference keys -> our keys, each shape-checked against ``target`` (our model's state dict).

    Raises :class:`CheckpointLayoutError` naming the first problem: a key that maps to
    nothing (with the encoder the file looks like, if another), a shape that differs, or a
    weight of ours the file does not provide. ``encoder_only``: the ``ecg_encoder`` part only
    (keys with or without the ``ecg_encoder.`` prefix).
    """
    if encoder not in ECG_ENCODERS:
        raise CheckpointLayoutError(f"unknown ECG encoder {encoder!r}; choose one of {', '.join(ECG_ENCODERS)}")
    ref = dict(ref)
    if encoder_only and not any(k.startswith("ecg_encoder.") for k in ref):
        ref = {f"ecg_encoder.{k}": v for k, v in ref.items()}
    shapes = {k: tuple(v.shape) for k, v in ref.items()}
    kind = "encoder-only" if encoder_only else "whole-model"

    def wrong_layout(detail: str) -> CheckpointLayoutError:
        guess = guess_encoder({k: s for k, s in shapes.items() if k.startswith("ecg_encoder.")})
        hint = f"; it looks like a {guess} checkpoint (--ecg-encoder {guess})" if guess and guess != encoder else ""
        return CheckpointLayoutError(f"{source} is not a MERL {encoder} {kind} checkpoint: {detail}{hint}")

    rules = _rules(encoder, encoder_only)
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in ref.items():
        if DROPPED.match(key) and encoder in DEPTHS:
            dropped.append(key)
            continue
        if key == _POSITION_IDS and not encoder_only and "text_encoder.model.embeddings.position_ids" not in target:
            continue
        for pattern, template, may_reshape in rules:
            if m := pattern.match(key):
                ours, reshape = template(m), may_reshape
                break
        else:
            unmapped = [k for k in ref if not any(p.match(k) for p, _, _ in rules)]
            raise wrong_layout(f"{len(unmapped)} key(s) match no reference key of that model, e.g. {key!r}")
        if ours not in target:
            raise wrong_layout(f"{key!r} has no counterpart {ours!r} in this model")
        want = tuple(target[ours].shape)
        if reshape and tuple(value.shape) != want and value.numel() == target[ours].numel():
            value = value.reshape(want)
        if tuple(value.shape) != want:
            raise wrong_layout(f"{key!r} has shape {tuple(value.shape)}, this model expects {want}")
        out[ours] = value.to(target[ours].dtype)
    prefixes = target_prefixes(encoder, encoder_only)
    missing = [k for k in target if k.startswith(prefixes) and k not in out]
    if missing:
        raise wrong_layout(f"{len(missing)} weight(s) missing, e.g. {missing[0]!r}")
    log.info("%s: mapped %d reference tensors; dropped the unused classifier %s", source, len(out), dropped or "-")
    return out


def import_reference(checkpoint: str | Path, ecg_encoder: str, out_dir: str | Path,
                     text_model: str = REFERENCE_TEXT_MODEL, encoder_only: bool = False) -> Path | str:
    """Write an export bundle (``merl.load``-able) from a reference checkpoint; ``checkpoint``
    and ``out_dir`` may be URIs (the bundle is then uploaded, as :func:`save_bundle` does).

    Whole-model file: every weight comes from it; ``text_model`` (HF name or local path of
    MedCPT-Query-Encoder) supplies the tokenizer and model config only. ``encoder_only``: the
    ECG encoder comes from the file, the text model's own pretrained weights are loaded, and
    the heads stay randomly initialised: such a bundle serves linear probing
    (``probe_features``), not zero-shot scoring; ``source.json`` records which it is.
    """
    from merl.training.export import save_bundle
    from merl.training.model import build_model

    if ecg_encoder not in ECG_ENCODERS:
        raise CheckpointLayoutError(f"unknown ECG encoder {ecg_encoder!r}; choose one of {', '.join(ECG_ENCODERS)}")
    ref = load_reference_state_dict(checkpoint)
    cfg = paper_config(ecg_encoder, text_model)
    model = build_model(cfg.model, cfg.loss, pretrained_text=encoder_only)
    target = model.state_dict()
    mapped = convert_state_dict(ref, ecg_encoder, target, encoder_only=encoder_only, source=str(checkpoint))
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected, unexpected  # convert_state_dict only yields keys of target
    left = [k for k in missing if k != "logit_scale" and k.startswith(target_prefixes(ecg_encoder, encoder_only))]
    assert not left, left
    info = {"source": "MERL reference checkpoint", "checkpoint": str(checkpoint), "ecg_encoder": ecg_encoder,
            "text_model": text_model, "encoder_only": encoder_only,
            "note": "ECG encoder only: heads untrained; use for linear probing, not zero-shot" if encoder_only
            else "whole model: computes what the reference computes"}
    return save_bundle(model, cfg, out_dir, info=info)
