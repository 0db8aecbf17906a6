"""Zero-shot end to end with a real (tiny) MERLModel on real Parquet shards; report outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_fixtures import write_shards

from merl.core.tasks import TASKS
from merl.evaluation.report import EvalReport, write_report
from merl.evaluation.zeroshot import evaluate_zeroshot, is_synthetic
from merl.training.data.tasklabels import split_labels
from merl.training.zeroshot import resolve_prompts

torch = pytest.importorskip("torch")

from merl.training.config import ModelConfig  # noqa: E402

TINY = ModelConfig(ecg_encoder="resnet18", width=8, proj_dim=32, proj_hidden=32)


@pytest.fixture(scope="module")
def tiny_model():
    from merl.core.textmodel import load_tokenizer
    from merl.training.data.config import DataConfig
    from merl.training.model.registry import build_model

    torch.manual_seed(0)
    model = build_model(TINY)
    return model, load_tokenizer(), DataConfig(fs=100, n_samples=1000, max_text_tokens=32)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return str(write_shards(tmp_path_factory.mktemp("shards")))


def test_split_labels_sorted_and_filtered(shards):
    sl = split_labels(TASKS["ptbxl_form"], shards, "test")
    # Only the IMI/NST_ group carries a form statement (NST), every third record.
    assert list(sl.ids) == ["ptbxl:test001", "ptbxl:test004"]
    assert sl.matrix.y[:, TASKS["ptbxl_form"].labels.index("NST")].tolist() == [1, 1]


def test_is_synthetic_from_manifest_or_source_marker(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    real = write_shards(tmp_path / "real", n_per_split=(1, 1, 1), dataset="ptbxl", config={"root": str(src)})
    assert not is_synthetic(str(real))
    (src / "synthetic.json").write_text('{"synthetic": true}')
    assert is_synthetic(str(real))


def test_task_on_the_wrong_dataset_is_refused(shards):
    with pytest.raises(ValueError, match="icbeb reads cpsc2018 records, but .* holds ptbxl"):
        split_labels(TASKS["icbeb"], shards, "test")


def test_prompts_given_default_and_underscore_keys():
    task = TASKS["ptbxl_form"]
    p = resolve_prompts(task, ["NST", "DIG"], {"NST_": "non specific st changes"})
    assert p["NST"] == "non specific st changes"
    assert p["DIG"]  # default: a name, never empty


def test_zeroshot_end_to_end_and_report(tiny_model, shards, tmp_path):
    model, tok, data_cfg = tiny_model
    model.train()
    res = evaluate_zeroshot(model, tok, "ptbxl_super_class", shards, data_cfg, split="val", batch_size=4)
    assert model.training  # mode restored for the train loop
    assert res.n_records == 6 and res.synthetic
    assert res.scores.shape == (6, 5) and res.y_true.shape == (6, 5)
    assert np.all(np.abs(res.scores) <= 1 + 1e-5)  # cosine similarities
    # no val record is HYP: degenerate, excluded from the macro mean
    assert res.excluded == ["HYP"]
    assert math.isfinite(res.macro_auc)

    # Scores are aligned with records: recompute one row straight from the model.
    from merl.training.data.scan import iter_signal_batches
    from merl.training.data.transforms import decode_batch, prepare_ecg_batch
    from merl.training.zeroshot import class_embeddings

    batch = next(iter_signal_batches(shards, "val", ids=["ptbxl:val002"])).to_pydict()
    x = torch.from_numpy(prepare_ecg_batch(decode_batch(batch), 500, data_cfg))
    model.eval()
    with torch.inference_mode():
        e = model.encode_ecg(x, normalize=True).numpy()
    t = class_embeddings(model, tok, [res.prompts[lab] for lab in res.labels]).numpy()
    np.testing.assert_allclose(res.scores[2], (e @ t.T)[0], atol=1e-5)
    assert res.y_true[2].tolist() == [0, 0, 0, 1, 0]  # val002 = CLBBB -> CD

    written = write_report(EvalReport([res], meta={"model": "tiny"}), tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["data"] == "synthetic"
    assert data["paper_comparison"]["comparable"] is False
    assert data["zeroshot"][0]["per_class"]["HYP"]["auc"] is None  # NaN -> null
    assert len(written["plots"]) == 2
    for p in written["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_bundle_with_linear_probe(tiny_model, shards, tmp_path):
    from typer.testing import CliRunner

    from merl.cli import app
    from merl.training.config import TrainConfig
    from merl.training.export import save_bundle

    model, _, data_cfg = tiny_model
    bundle = save_bundle(model, TrainConfig(model=TINY, data=data_cfg), tmp_path / "bundle")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"ptbxl_rhythm": {"SR": "sinus rhythm", "AFIB": "atrial fibrillation"}}))
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(bundle), "--task", f"ptbxl_rhythm={shards}",
                                   "--prompts", str(prompts), "--linear-probe", "--out", str(out),
                                   "probe_fractions=[0.5, 1.0]", "batch_size=8"])
    assert res.exit_code == 0, res.output
    assert "Zero-shot - SYNTHETIC data" in res.output and "75.2" in res.output
    data = json.loads((out / "results.json").read_text())
    zs = data["zeroshot"][0]
    assert zs["task"] == "ptbxl_rhythm" and zs["split"] == "test" and zs["n_records"] == 6
    assert zs["prompts"]["SR"] == "sinus rhythm" and zs["prompts"]["AFIB"] == "atrial fibrillation"
    fits = data["linear_probe"][0]["fits"]
    assert [f["n_train"] for f in fits] == [6, 12]  # 12 train records, all carry a rhythm label
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["ptbxl_rhythm_auc.png", "ptbxl_rhythm_roc.png"]


def test_prompts_are_not_cut_to_the_report_length(tiny_model, shards, tmp_path, caplog):
    """Prompts get the text model's length, not data.max_text_tokens (32 here); a prompt still
    too long is cut with a warning and counted in results.json."""
    from merl.training.zeroshot import class_embeddings, prompt_token_counts, prompt_token_limit

    model, tok, data_cfg = tiny_model
    long = "sinus rhythm, " + ", ".join(["normal electrocardiogram with regular p waves and narrow qrs"] * 6)
    n_tokens = prompt_token_counts(tok, [long])[0]
    assert data_cfg.max_text_tokens < n_tokens < 512
    assert prompt_token_limit(model, tok) == 512  # MiniLM: tokenizer and position table agree
    whole, cut = class_embeddings(model, tok, [long]), class_embeddings(model, tok, [long], data_cfg.max_text_tokens)
    assert not torch.allclose(whole, cut, atol=1e-4)

    prompts = {"SR": long, "AFIB": "atrial fibrillation"}
    res = evaluate_zeroshot(model, tok, "ptbxl_rhythm", shards, data_cfg, prompts=prompts, split="test")
    assert res.prompt_token_limit == 512 and res.truncated_prompts == []
    t = class_embeddings(model, tok, [res.prompts[lab] for lab in res.labels]).numpy()
    assert np.allclose(t[res.labels.index("SR")], whole[0].numpy(), atol=1e-5)

    with caplog.at_level("WARNING", logger="merl.training.zeroshot"):
        short = evaluate_zeroshot(model, tok, "ptbxl_rhythm", shards, data_cfg, prompts=prompts, split="test",
                                  max_prompt_tokens=16)
    assert short.truncated_prompts == ["SR"] and "longer than 16 tokens and were cut: ['SR']" in caplog.text
    write_report(EvalReport([short, res]), tmp_path, plots=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["prompts_truncated"] == 1
    assert data["zeroshot"][0]["truncated_prompts"] == ["SR"] and data["zeroshot"][0]["prompt_token_limit"] == 16


def test_reference_prompt_file_drives_evaluate_as_is(shared_dir, tiny_model, shards, tmp_path):
    """The paper's released CKEPE prompts ({label: prompt}, 131 labels): every label of every
    task gets its prompt verbatim, none falls back, none is cut."""
    from typer.testing import CliRunner

    from merl.cli import app
    from merl.training.config import TrainConfig
    from merl.training.export import save_bundle
    from merl.training.zeroshot import load_prompts

    path = shared_dir / "reference" / "merl_ckepe_prompt.json"
    if not path.is_file():
        pytest.skip("reference prompt file absent")
    released = json.loads(path.read_text())
    for name, task in TASKS.items():
        assert load_prompts(path, name) == {lab: released[lab] for lab in task.labels}
    model, _, data_cfg = tiny_model
    bundle = save_bundle(model, TrainConfig(model=TINY, data=data_cfg), tmp_path / "bundle")
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(bundle), "--task", f"ptbxl_rhythm={shards}",
                                   "--task", f"ptbxl_super_class={shards}", "--prompts", str(path),
                                   "--out", str(out), "plots=false"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    for zs in data["zeroshot"]:
        assert zs["prompts"] == {lab: released[lab] for lab in zs["prompts"]}
        assert zs["defaulted_prompts"] == [] and zs["truncated_prompts"] == []
    assert data["prompts_truncated"] == 0
    cmp = data["paper_comparison"]  # from the bundle's config and the shards' manifests
    assert cmp["comparable"] is False and cmp["prompts"] == "the paper's released CKEPE prompts"
    assert {"synthetic data", "model.arch=merl-ray (the paper's towers and heads: paper)"} <= set(cmp["reasons"])
    assert "ptbxl_rhythm: shards of 'synthetic-test', not prepared from ptbxl" in cmp["reasons"]


def test_prompt_files_with_unknown_labels_or_tasks_are_refused(tmp_path):
    from merl.core.config import ConfigError
    from merl.training.zeroshot import load_prompts

    def write(obj):
        p = tmp_path / "p.json"
        p.write_text(json.dumps(obj))
        return p

    # keys are matched without the SCP table's underscores and case
    assert load_prompts(write({"nst_": "non-specific st", "AFIB": "af", "SB": "sinus brady"}), "ptbxl_form") == {
        "NST": "non-specific st"}
    with pytest.raises(ConfigError, match=r"unknown label\(s\) \['AFIBB'\]"):
        load_prompts(write({"AFIB": "af", "AFIBB": "typo"}), "icbeb")
    with pytest.raises(ConfigError, match="no prompt for any icbeb label"):
        load_prompts(write({"HYP": "hypertrophy"}), "icbeb")
    # per task: the section must use that task's labels; dataset names work as task keys
    assert load_prompts(write({"cpsc2018": {"AFIB": "af"}}), "icbeb") == {"AFIB": "af"}
    with pytest.raises(ConfigError, match=r"\[icbeb\]: unknown label\(s\) \['HYP'\]: not labels of icbeb"):
        load_prompts(write({"icbeb": {"AFIB": "af", "HYP": "x"}}), "icbeb")
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['ptb'\]"):
        load_prompts(write({"ptb": {"NORM": "normal"}}), "ptbxl_super_class")
    with pytest.raises(ConfigError, match="none for chapman"):
        load_prompts(write({"icbeb": {"AFIB": "af"}}), "chapman")
