"""`merl evaluate` on the real CinC 2021 records (a prepared WFDB folder, SNOMED #Dx labels), every
record, the three sinus classes: the pipeline of `python -m bench sim2real` with a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.realdata
torch = pytest.importorskip("torch")

# Records carrying each class in ../shared/real-ecg/cinc2021 (their #Dx lines, via csn_conditions.csv)
POSITIVES = {"SR": {"HR06000", "HR06001", "HR06002", "HR06003", "HR06004"},
             "ST": {"E07501", "E07502", "E07503", "HR06003", "JS20000", "JS20001", "JS20003", "JS20004"},
             "SB": {"E07500", "HR06002"}}


def test_zeroshot_on_the_real_records(shared_dir, tmp_path, ray_local):
    from typer.testing import CliRunner

    from bench.sim2real import CLASSES, prepare_real
    from merl.cli import app
    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.data.config import DataConfig
    from merl.training.export import save_bundle
    from merl.training.model.registry import build_model

    shards = prepare_real(shared_dir / "real-ecg" / "cinc2021", shared_dir / "reference" / "csn_conditions.csv",
                          tmp_path / "real")
    tiny = ModelConfig(ecg_encoder="resnet18", width=8, proj_dim=32, proj_hidden=32)
    torch.manual_seed(0)
    bundle = save_bundle(build_model(tiny), TrainConfig(model=tiny, data=DataConfig(fs=100, n_samples=1000)),
                         tmp_path / "bundle")
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(bundle), "--task", f"chapman={shards}", "--split", "all",
                                   "--out", str(out), "labels={chapman: [SR, ST, SB]}", "min_records=1",
                                   "n_boot=200"], terminal_width=200)
    assert res.exit_code == 0, res.output
    z = json.loads((out / "results.json").read_text())["zeroshot"][0]
    assert z["split"] == "all" and z["n_records"] == len(set().union(*POSITIVES.values())) == 13
    assert list(z["per_class"]) == list(CLASSES)
    for lab, ids in POSITIVES.items():
        m = z["per_class"][lab]
        assert m["n_pos"] == len(ids) and m["n"] == 13
        assert 0 <= m["auc"] <= 100 and m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
    assert z["prompts"]["SB"] == "Sinus Bradycardia" or "brady" in z["prompts"]["SB"].lower()
    assert z["synthetic"] is False and np.isfinite(z["macro_auc"])
