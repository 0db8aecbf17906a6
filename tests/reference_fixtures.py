"""The MERL reference's checkpoint layout and forward pass, restated for tests.

``tests/data/merl_checkpoint_layout/`` is a copy of the layout facts (key, shape, dtype of
the reference's whole-model state dict per ECG encoder, and its parameter counts). The
``reference_*`` functions below recompute the reference's ``ext_ecg_emb`` and
``proj_t(get_text_emb(...))`` with ``torch.nn.functional`` ops directly on a state dict in
that layout: written from reading the reference model (utils_builder.py, resnet1d.py,
vit1d.py), not from this project's modules, so they check the importer independently.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

LAYOUT_DIR = Path(__file__).parent / "data" / "merl_checkpoint_layout"
ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "vit_tiny", "vit_small", "vit_middle", "vit_base")
_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def layout(encoder: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """key -> (shape, dtype) of the reference's whole-model checkpoint, ``lm_model.*`` excluded."""
    out = {}
    for line in (LAYOUT_DIR / f"{encoder}.tsv").read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        out[key] = (dims, _DTYPES[dtype])
    return out


def parameter_counts() -> dict[str, dict[str, int]]:
    """The README's table: encoder -> {ecg_encoder, head, uni, proj_t} trainable parameters."""
    rows = {}
    for line in (LAYOUT_DIR / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ENCODERS:
            rows[cells[0]] = dict(zip(("ecg_encoder", "head", "uni", "proj_t"),
                                      (int(c.replace(",", "")) for c in cells[1:])))
    return rows


def meta_state_dict(encoder: str) -> dict[str, torch.Tensor]:
    """Shape-only tensors in the reference layout (no memory; for key/shape checks)."""
    return {k: torch.empty(s, dtype=d, device="meta") for k, (s, d) in layout(encoder).items()}


def random_state_dict(encoder: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in the reference layout, scaled so activations stay O(1) through the net:
    BN running stats plausible, norms near identity, weights ~ 1/sqrt(fan-in)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, (shape, dtype) in layout(encoder).items():
        if dtype == torch.int64:
            out[key] = torch.tensor(100, dtype=dtype)
            continue
        r = torch.randn(shape, generator=g)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "running_var":
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "running_mean" or leaf.endswith("bias"):
            out[key] = 0.1 * r
        elif leaf == "weight" and len(shape) == 1:  # BatchNorm / LayerNorm scale
            out[key] = 1.0 + 0.1 * r
        elif leaf in ("positional_embedding", "pos_embedding", "cls_token"):
            out[key] = 0.5 * r
        else:  # conv / linear / in_proj weights
            out[key] = r / math.sqrt(math.prod(shape[1:]))
    return out


# --- the reference forward pass, restated --------------------------------------------------

def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _ln(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)


def _linear(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def reference_resnet_features(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """ResNet1d backbone: conv7/2 + BN + ReLU (no max-pool), four stages -> [B, C, T]."""
    e = "ecg_encoder"
    h = F.relu(_bn(F.conv1d(x, sd[f"{e}.conv1.weight"], stride=2, padding=3), sd, f"{e}.bn1"))
    for stage in range(1, 5):
        j = 0
        while f"{e}.layer{stage}.{j}.conv1.weight" in sd:
            p = f"{e}.layer{stage}.{j}"
            stride = 2 if stage > 1 and j == 0 else 1
            if f"{p}.conv3.weight" in sd:  # bottleneck: 1x1, 3x3 (strided), 1x1 (x4)
                out = F.relu(_bn(F.conv1d(h, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                out = F.relu(_bn(F.conv1d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
                out = _bn(F.conv1d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:  # basic: 3x3 (strided), 3x3
                out = F.relu(_bn(F.conv1d(h, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
                out = _bn(F.conv1d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.shortcut.0.weight" in sd:
                short = _bn(F.conv1d(h, sd[f"{p}.shortcut.0.weight"], stride=stride), sd, f"{p}.shortcut.1")
            else:
                short = h
            h = F.relu(out + short)
            j += 1
    return h


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Nq, D] x [B, N, D] -> [B, Nq, D]; heads split as 'b n (h d) -> b h n d'."""
    b, nq, d = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)
    att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return (att @ split(v)).transpose(1, 2).reshape(b, nq, d)


def reference_resnet_embedding(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """``ext_ecg_emb`` for ResNets: downconv, then the attention pool with a learned query
    (query = cls_token + pos[0], then pos added to every token again), 4 heads, c_proj."""
    f = F.conv1d(reference_resnet_features(sd, x), sd["downconv.weight"], sd["downconv.bias"])
    tokens = f.permute(0, 2, 1)
    pos = sd["att_pool_head.positional_embedding"]
    query = (sd["att_pool_head.cls_token"] + pos[:, :1]).expand(x.shape[0], -1, -1)
    seq = torch.cat([query, tokens], dim=1) + pos
    w, b = sd["att_pool_head.mhsa.in_proj_weight"], sd["att_pool_head.mhsa.in_proj_bias"]
    d = seq.shape[-1]
    q = F.linear(seq[:, :1], w[:d], b[:d])
    k = F.linear(seq, w[d:2 * d], b[d:2 * d])
    v = F.linear(seq, w[2 * d:], b[2 * d:])
    o = _linear(_attention(q, k, v, heads=4), sd, "att_pool_head.mhsa.out_proj")
    return _linear(o, sd, "att_pool_head.c_proj").reshape(x.shape[0], -1)


def reference_vit_features(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """ViT: patch conv (no bias) + positions, pre-norm blocks, mean over tokens, LayerNorm."""
    e = "ecg_encoder"
    w = sd[f"{e}.to_patch_embedding.weight"]
    t = F.conv1d(x, w, stride=w.shape[-1]).transpose(1, 2) + sd[f"{e}.pos_embedding"]
    heads = t.shape[-1] // 64  # dim_head 64 in every size
    i = 0
    while f"{e}.block{i}.attn.norm.weight" in sd:
        p = f"{e}.block{i}"
        q, k, v = _linear(_ln(t, sd, f"{p}.attn.norm"), sd, f"{p}.attn.fn.to_qkv").chunk(3, dim=-1)
        t = t + _linear(_attention(q, k, v, heads), sd, f"{p}.attn.fn.to_out.0")
        y = F.gelu(_linear(_ln(t, sd, f"{p}.ff.norm"), sd, f"{p}.ff.fn.net.0"))
        t = t + _linear(y, sd, f"{p}.ff.fn.net.3")
        i += 1
    return _ln(t.mean(dim=1), sd, f"{e}.norm")


def reference_vit_embedding(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """``ext_ecg_emb`` for ViTs: proj_e = Linear, BN, ReLU, Linear, BN."""
    z = F.relu(_bn(_linear(reference_vit_features(sd, x), sd, "proj_e.0"), sd, "proj_e.1"))
    return _bn(_linear(z, sd, "proj_e.3"), sd, "proj_e.4")


def reference_ecg_embedding(sd: dict, x: torch.Tensor) -> torch.Tensor:
    return reference_vit_embedding(sd, x) if "proj_e.0.weight" in sd else reference_resnet_embedding(sd, x)


def reference_text_embedding(sd: dict, pooler_output: torch.Tensor) -> torch.Tensor:
    """``proj_t(get_text_emb(...))``: Linear, GELU, Linear on the LM's pooler output."""
    return _linear(F.gelu(_linear(pooler_output, sd, "proj_t.0")), sd, "proj_t.2")


# --- a tiny BERT-base-shaped text model (hidden 768, as proj_t expects) ----------------------

WORDS = ("sinus rhythm normal ecg atrial fibrillation flutter left right bundle branch block "
         "inferior anterior infarct st elevation depression t wave inversion ventricular premature "
         "complex tachycardia bradycardia axis deviation hypertrophy low voltage qt prolonged").split()


def make_tiny_bert(folder: Path, seed: int = 0, layers: int = 2) -> dict[str, torch.Tensor]:
    """Save a randomly initialised BertModel (hidden 768, 12 heads, ``layers`` layers, small
    vocabulary) + a WordPiece tokenizer into ``folder``; returns its state dict."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *"abcdefghijklmnopqrstuvwxyz.,"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                     intermediate_size=256, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = BertModel(cfg)
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def random_bert_state(folder: Path, seed: int) -> dict[str, torch.Tensor]:
    """Another random BertModel of ``folder``'s config: distinct weights for an ``lm_model.*`` part."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    model = BertModel(BertConfig.from_pretrained(folder))
    return {k: v.clone() for k, v in model.state_dict().items()}


def reference_pooler_output(folder: Path, lm_state: dict, input_ids, attention_mask) -> torch.Tensor:
    """``lm_model(...).pooler_output`` of a BertModel holding ``lm_state`` (eval mode)."""
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig.from_pretrained(folder))
    model.load_state_dict(lm_state)
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def encoder_only(sd: dict) -> dict[str, torch.Tensor]:
    """What the reference's ``<encoder>_encoder.pth`` holds: ``ecg_encoder.state_dict()`` (no prefix)."""
    return {re.sub(r"^ecg_encoder\.", "", k): v for k, v in sd.items() if k.startswith("ecg_encoder.")}
