"""One zero-shot scoring path: training validation, `merl evaluate` and `merl classify` agree.

All three go through :mod:`merl.training.zeroshot`; here they score the same tiny model on
the same records, and no module outside the model (and the training loss) L2-normalises
embeddings by hand.
"""

from __future__ import annotations

import ast
import contextlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from eval_fixtures import write_shards

torch = pytest.importorskip("torch")

from merl.training.config import ModelConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASK = "ptbxl_super_class"
TINY = ModelConfig(ecg_encoder="resnet18", width=8, proj_dim=32, proj_hidden=32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from merl.core.textmodel import load_tokenizer
    from merl.training.data.config import DataConfig
    from merl.training.model.registry import build_model

    torch.manual_seed(1)
    model = build_model(TINY)
    shards = str(write_shards(tmp_path_factory.mktemp("shards")))
    return model, load_tokenizer(), DataConfig(fs=100, n_samples=1000, max_text_tokens=32), shards


def _val_ids(shards: str, n: int) -> list[str]:
    """The record ids behind the score rows: the task's labelled val records, sorted."""
    from merl.core.tasks import get_task
    from merl.training.data.tasklabels import split_labels

    ids = list(split_labels(get_task(TASK), shards, "val").ids)
    assert len(ids) == n
    return ids


def test_evaluate_validation_and_classify_score_alike(setup):
    from merl.evaluation.zeroshot import evaluate_zeroshot
    from merl.training.config import TrainConfig
    from merl.training.data.transforms import prepare_ecg_batch
    from merl.training.export import Bundle
    from merl.training.infer import load_inputs, score
    from merl.training.loop import zeroshot_validation
    from merl.training.loss import MAX_LOGIT_SCALE
    from merl.training.zeroshot import class_embeddings, zero_shot_scores

    model, tok, data_cfg, shards = setup
    model.eval()
    res = evaluate_zeroshot(model, tok, TASK, shards, data_cfg, split="val", batch_size=4)
    assert res.n_records == 6 and math.isfinite(res.macro_auc)

    # Training-time validation reports the benchmark's macro AUC for the same split.
    cfg = TrainConfig(model=TINY, data=data_cfg, eval={"tasks": [TASK], "shards": {TASK: shards}, "split": "val",
                                                       "batch_size": 4})
    stepper = SimpleNamespace(evaluating=lambda: contextlib.nullcontext(model))  # the loop's view of the weights
    val = zeroshot_validation(stepper, cfg, "cpu")
    assert val[f"val_zeroshot_auc_{TASK}"] == pytest.approx(res.macro_auc, abs=1e-9)
    assert val["val_zeroshot_auc"] == pytest.approx(res.macro_auc, abs=1e-9)

    # The evaluate scores are zero_shot_scores of unit embeddings straight from the model.
    ids, signals, fs = load_inputs(shards)
    val_rows = [ids.index(i) for i in _val_ids(shards, res.n_records)]
    x = torch.from_numpy(prepare_ecg_batch(signals[val_rows], fs, data_cfg))
    text = class_embeddings(model, tok, res.prompts)
    with torch.no_grad():
        cos = zero_shot_scores(model.encode_ecg(x, normalize=True), text)
    np.testing.assert_allclose(res.scores, cos.numpy(), atol=1e-5)

    # `merl classify` = softmax over classes of the same scores times the logit scale.
    probs = score(Bundle(model, tok, cfg), signals[val_rows], fs, res.prompts)
    scale = model.logit_scale.detach().float().clamp(max=MAX_LOGIT_SCALE).exp()
    np.testing.assert_allclose(probs, torch.softmax(scale * torch.from_numpy(res.scores), dim=-1).numpy(), atol=1e-5)
    assert probs.shape == (6, len(res.labels))


def test_class_embeddings_are_unit_rows_in_prompt_order(setup):
    from merl.training.zeroshot import class_embeddings

    model, tok, data_cfg, _ = setup
    prompts = {"a": "sinus rhythm", "b": "atrial fibrillation", "c": "left bundle branch block"}
    model.train()
    emb = class_embeddings(model, tok, prompts, batch_size=2)  # two batches
    assert model.training  # mode restored for the train loop
    assert emb.shape == (3, TINY.proj_dim) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    one = class_embeddings(model, tok, ["atrial fibrillation"])
    assert torch.allclose(emb[1], one[0], atol=1e-5)


def _normalize_calls(path: Path) -> list[int]:
    """Lines calling ``normalize(...)`` / ``F.normalize(...)`` (torch's L2 normalisation)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name == "normalize" and isinstance(f, ast.Attribute) and ast.unparse(f.value) in (
                    "F", "torch.nn.functional", "nn.functional"):
                out.append(node.lineno)
    return out


def test_no_hand_rolled_embedding_normalisation():
    """Unit embeddings come from ``encode_*(normalize=True)``; the loss normalises its own inputs."""
    allowed = {"training/model/merl.py", "training/loss.py"}
    found = {str(p.relative_to(REPO)): _normalize_calls(p)
             for folder in ("training", "evaluation", "merl") for p in (REPO / folder).rglob("*.py")}
    assert {f for f, lines in found.items() if lines} == allowed
