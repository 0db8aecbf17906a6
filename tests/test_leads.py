"""Any ECG, any leads (issue 12): lead masks from ingest to inference, reduced-lead evaluation."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from ecg_fixtures import canonical_signal, write_wfdb

from merl.core.config import ConfigError
from merl.training.data.canonical import (
    LEAD_SETS,
    canonicalize_masked,
    describe_leads,
    lead_index,
    leads_mask,
    parse_leads,
    resolve_lead_set,
)
from merl.training.data.config import DataConfig, LeadDropoutConfig
from merl.training.data.readers import RawSignal
from merl.training.data.schema import LEADS, SHARD_SCHEMA_NO_MASK, CanonicalRecord, rows_to_table
from merl.training.data.shards import has_lead_mask, read_shard, write_shard
from merl.training.data.transforms import decode_masks, drop_leads, model_lead_mask, prepare_ecg_batch

# -- aliases and named sets ----------------------------------------------------------------


@pytest.mark.parametrize("name, lead", [
    ("MLII", "II"), ("ML2", "II"), ("mlii", "II"), ("V5 chest", "V5"), ("v5", "V5"), ("AVL", "aVL"),
    ("avf", "aVF"), ("aVR", "aVR"), ("D1", "I"), ("lead III", "III"), ("MV1", "V1"), (" V6 ", "V6"),
])
def test_lead_aliases(name, lead):
    assert LEADS[lead_index(name)] == lead


@pytest.mark.parametrize("name", ["ECG1", "-aVR", "X", "", "V7", "vx"])
def test_unknown_names_are_not_leads(name):
    assert lead_index(name) is None


def test_parse_leads_and_lead_sets():
    assert parse_leads("I, mlii,V1") == ["I", "II", "V1"]
    with pytest.raises(ConfigError, match="unknown lead name.*ECG1"):
        parse_leads("I,ECG1")
    assert resolve_lead_set("limb6") == ("limb6", ("I", "II", "III", "aVR", "aVL", "aVF"))
    assert resolve_lead_set("12")[1] == LEADS and LEAD_SETS["chest6"] == LEADS[6:]
    assert resolve_lead_set("I+II") == ("I+II", ("I", "II")) and resolve_lead_set("ii") == ("II", ("II",))
    assert leads_mask(["I", "V6"]).tolist() == [True] + [False] * 10 + [True]
    assert describe_leads(np.ones(12, bool)) == "12" and describe_leads(leads_mask(["II", "V5"])) == "II,V5"
    assert describe_leads(~leads_mask(["V2", "V4"])) == "12 - V2,V4" and describe_leads(np.zeros(12, bool)) == "none"


# -- masks written and read ----------------------------------------------------------------


def _row(i: int, mask=None) -> dict:
    sig = canonical_signal(seed=i).astype(np.float32)
    if mask is not None:
        sig[~mask] = 0
    return CanonicalRecord(id=f"t:{i}", source="t", signal=sig, report="sinus rhythm", split="test",
                           lead_mask=mask).to_row()


def test_masks_written_and_read(tmp_path):
    mask = leads_mask(["II", "V5"])
    write_shard(tmp_path / "s.parquet", [_row(0, mask), _row(1)])
    tab = read_shard(tmp_path / "s.parquet").to_pydict()
    got = decode_masks(tab)
    assert got[0].tolist() == mask.tolist() and got[1].all()


def test_old_shards_without_the_column_read_as_all_present(tmp_path):
    rows = [{k: v for k, v in _row(i).items() if k != "lead_mask"} for i in range(2)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA_NO_MASK), tmp_path / "old.parquet")
    tab = read_shard(tmp_path / "old.parquet")  # the older contract is still accepted
    assert "lead_mask" not in tab.column_names and decode_masks(tab.to_pydict()).all()
    assert rows_to_table([_row(0)]).column("lead_mask").to_pylist()[0] == [True] * 12
    write_shard(tmp_path / "new.parquet", [_row(0)])
    assert not has_lead_mask(tmp_path / "old.parquet") and has_lead_mask(tmp_path / "new.parquet")  # the loader's check
    from merl.training.data.manifest import Manifest, ShardInfo, write_manifest
    from merl.training.data.scan import iter_signal_batches
    from merl.training.infer import load_inputs

    write_manifest(tmp_path, Manifest(dataset="t", shards=[ShardInfo(file="old.parquet", rows=2, sha256="-")]))
    recs = load_inputs(tmp_path)
    assert recs.ids == ["t:0", "t:1"] and recs.lead_mask.all() and recs.signals.shape == (2, 12, 5000)
    assert decode_masks(next(iter_signal_batches(str(tmp_path), "test")).to_pydict()).all()


def test_real_mitbih_100_is_masked_not_refused(shared_dir):
    from merl.training.data.readers.wfdb_reader import read_wfdb

    raw = read_wfdb(shared_dir / "real-ecg" / "physionet-wfdb" / "100")
    sig, mask = canonicalize_masked(raw)
    assert [lead for lead, m in zip(LEADS, mask) if m] == ["II", "V5"] and np.all(sig[~mask] == 0)


def test_cinc2021_keeps_15_of_15(shared_dir):
    """`merl data prepare --dataset wfdb` on the real CinC folder: JS20004's dead V2/V4/V6 are masked."""
    from merl.training.data.prepare import PrepareConfig, process_records
    from merl.training.data.readers import make_reader

    root = shared_dir / "real-ecg" / "cinc2021"
    cfg = PrepareConfig(conditions_csv=str(shared_dir / "reference" / "csn_conditions.csv"))
    reader = make_reader("wfdb", str(root), conditions_csv=cfg.conditions_csv)
    refs = [r.to_dict() for r in reader.index(str(root)).refs]
    rows, bad = process_records("wfdb", str(root), cfg, refs)
    assert len(rows) == 15 and not bad
    masks = {r["id"]: r["lead_mask"] for r in rows}
    assert [lead for lead, m in zip(LEADS, masks["wfdb:JS20004"]) if not m] == ["V2", "V4", "V6"]
    assert sum(all(m) for m in masks.values()) == 14


def test_record_without_usable_leads_names_what_it_has():
    from merl.training.data.readers import RecordError

    with pytest.raises(RecordError, match=r"no recognisable lead \(has ECG1, ECG2\)"):
        canonicalize_masked(RawSignal(np.ones((2, 5000)), 500, ["ECG1", "ECG2"]))
    with pytest.raises(RecordError, match=r"no usable lead.*has I, II"):
        canonicalize_masked(RawSignal(np.ones((2, 5000)), 500, ["I", "II"]))  # both flat


# -- transforms: masked leads are zero, lead dropout -----------------------------------------


@pytest.mark.parametrize("norm", ["minmax", "zscore", "minmax_record"])
def test_prepare_zeroes_masked_leads_whatever_they_hold(norm):
    cfg = DataConfig(fs=100, n_samples=1000, normalize=norm, lead_order="mimic")
    x = np.random.default_rng(0).normal(size=(2, 12, 5000)).astype(np.float32)
    mask = np.ones((2, 12), bool)
    mask[:, [2, 4]] = False
    y = x.copy()
    y[:, [2, 4]] = 100.0  # junk in masked rows must not change anything
    a, b = prepare_ecg_batch(x, 500, cfg, lead_mask=mask), prepare_ecg_batch(y, 500, cfg, lead_mask=mask)
    np.testing.assert_array_equal(a, b)
    m = model_lead_mask(mask, 2, cfg)  # mimic rows: aVF (5) before aVL (4)
    assert m[0].tolist() == [True, True, False, True, True, False] + [True] * 6
    assert np.all(a[:, ~m[0]] == 0)


def test_lead_dropout_families():
    rng = np.random.default_rng(0)
    full = np.ones((400, 12), bool)
    limb = drop_leads(full, rng, 1.0, {"limb": 1.0})
    assert (limb == leads_mask(LEAD_SETS["limb6"])).all()
    single = drop_leads(full, rng, 1.0, {"single": 1.0})
    assert (single.sum(axis=1) == 1).all()
    mixed = drop_leads(full, rng, 0.5, {"chest": 1.0, "random": 1.0})
    assert 0.3 < (mixed.sum(axis=1) < 12).mean() < 0.7
    two = np.zeros((5, 12), bool)
    two[:, [1, 10]] = True  # II + V5 only: a chest-only draw keeps V5, a limb draw II
    assert (drop_leads(two, rng, 1.0, {"chest": 1.0}).sum(axis=1) == 1).all()
    none = np.zeros((3, 12), bool)
    none[:, 6] = True  # only V1: a limb draw would leave nothing, so the record stays whole
    assert (drop_leads(none, rng, 1.0, {"limb": 1.0}) == none).all()
    assert (drop_leads(full, rng, 0.0, {"limb": 1.0}) == full).all()
    with pytest.raises(ValueError):
        LeadDropoutConfig(p=0.5, families={"limb": 0.0})


def test_paper_preset_has_no_lead_dropout():
    from merl.training.config import paper_config

    assert paper_config().data.lead_dropout.p == 0.0 and DataConfig().lead_dropout.p == 0.0


# -- encoders take a mask -------------------------------------------------------------------


@pytest.mark.parametrize("encoder, arch", [("resnet18", "merl-ray"), ("resnet18", "paper"),
                                           ("vit_tiny", "merl-ray"), ("vit_tiny", "paper")])
def test_masked_lead_does_not_change_the_embedding(encoder, arch):
    from merl.training.model.registry import build_ecg_encoder

    torch.manual_seed(0)
    enc = build_ecg_encoder(encoder, width=8, arch=arch, proj_dim=32).eval()
    if getattr(enc, "absence", None) is not None:
        torch.nn.init.normal_(enc.absence.lead_absent.weight)  # a trained absence embedding
    x = torch.randn(2, 12, 500)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 7] = False
    y = x.clone()
    y[:, 7] = torch.randn(2, 500) * 10
    with torch.no_grad():
        a, b = enc(x, mask)[0], enc(y, mask)[0]
        full = enc(x, None)[0]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, full, atol=1e-4)  # the mask is seen: the lead is gone
    if arch == "merl-ray":  # the absence signal tells "absent" from "flat at zero"
        z = x.clone()
        z[:, 7] = 0
        with torch.no_grad():
            assert not torch.allclose(enc(z, None)[0], a, atol=1e-5)


# -- inference on any subset, readable classify ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.export import save_bundle
    from merl.training.model import build_model

    cfg = TrainConfig(model=ModelConfig(width=8, freeze_text_layers=6, proj_dim=32, proj_hidden=32),
                      data=DataConfig(fs=100, n_samples=1000, max_text_tokens=32))
    torch.manual_seed(0)
    return save_bundle(build_model(cfg.model, cfg.loss), cfg, tmp_path_factory.mktemp("bundle"))


def _classify(*args):
    from typer.testing import CliRunner

    from merl.cli import app

    return CliRunner().invoke(app, ["classify", *map(str, args)])


def test_mitbih_100_classifies_with_two_leads(shared_dir, tiny_bundle, tmp_path):
    """MIT-BIH 100 (MLII + V5 at 360 Hz): MLII read as II, resampled, the other 10 leads masked."""
    import merl

    record = shared_dir / "real-ecg" / "physionet-wfdb" / "100"
    recs = merl.read_ecgs(record)
    assert recs.leads_of(0) == ["II", "V5"] and recs.fs == 500 and recs.signals.shape == (1, 12, 5000)
    model = merl.load(tiny_bundle)
    res = model.classify(recs.signals, recs.fs, labels=["SR", "ST"], lead_mask=recs.lead_mask)
    assert res.probs.shape == (1, 2) and np.isclose(res.probs.sum(), 1)
    # the API also takes the two rows by name: same scores
    two = recs.signals[:, [1, 10]]
    again = model.classify(two, 500, labels=["SR", "ST"], leads=["MLII", "V5"])
    np.testing.assert_allclose(again.probs, res.probs, atol=1e-6)
    names = ["MLII", "V5"]  # the tensor level: prepare + model_mask + encode_ecg = embed_ecg
    z = model.encode_ecg(model.prepare(two, 500, leads=names), normalize=True, lead_mask=model.model_mask(1, leads=names))
    assert torch.allclose(z, model.embed_ecg(two, 500, leads=names), atol=1e-5)
    out = _classify("--model", tiny_bundle, "--input", record, "--labels", "SR,ST", "--json", tmp_path / "s.json")
    assert out.exit_code == 0, out.output
    assert "II,V5" in out.output and "1st" in out.output
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["leads"] == {"100": "II,V5"} and set(saved["scores"]["100"]) == {"SR", "ST"}


def test_readable_classify_many_classes(tiny_bundle, tmp_path):
    """38 classes: top 3 per record by default, the matrix with --all, every score in --csv."""
    sig = canonical_signal(seed=1)
    write_wfdb(tmp_path, "rec", sig[[0, 1, 6]], 500, ["I", "II", "V1"])
    classes = [f"C{i:02d}" for i in range(38)]
    out = _classify("--model", tiny_bundle, "--input", tmp_path / "rec", "--labels", ",".join(classes),
                    "--csv", tmp_path / "s.csv")
    assert out.exit_code == 0, out.output
    header = next(line for line in out.output.splitlines() if "record" in line and "scores" not in line)
    assert "1st" in header and "3rd" in header and "C00" not in header and "I,II,V1" in out.output
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["record", "leads", "C00"] and len(rows[0].split(",")) == 40
    assert len(rows) == 2 and rows[1].startswith('rec,"I,II,V1",')
    out = _classify("--model", tiny_bundle, "--input", tmp_path / "rec", "--labels", "A,B,C,D", "--all",
                    "--leads", "I,II")
    assert out.exit_code == 0 and "I,II " in out.output and all(c in out.output for c in "ABCD")


def test_no_usable_lead_is_one_line(tiny_bundle, tmp_path):
    from merl.cli import main

    write_wfdb(tmp_path, "odd", canonical_signal()[:2], 500, ["ECG1", "ECG2"])
    res = _classify("--model", tiny_bundle, "--input", tmp_path / "odd", "--labels", "SR")
    assert isinstance(res.exception, ConfigError)
    assert str(res.exception) == "odd: no recognisable lead (has ECG1, ECG2)"
    # rows named on the command line when the header names no standard lead
    res = _classify("--model", tiny_bundle, "--input", tmp_path / "odd", "--labels", "SR", "--leads", "I,II")
    assert res.exit_code == 0 and "I,II" in res.output
    assert callable(main)  # main() prints ConfigError as one red line, exit 2 (no traceback)


# -- reduced-lead evaluation ------------------------------------------------------------------


def test_evaluate_lead_sets(tiny_bundle, tmp_path):
    from eval_fixtures import write_shards
    from typer.testing import CliRunner

    from merl.cli import app

    shards = write_shards(tmp_path / "shards", n_per_split=(12, 6, 40))
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_bundle), "--task", f"ptbxl_rhythm={shards}",
                                   "--lead-sets", "12,limb6,I+II,I,II", "--out", str(out), "batch_size=8",
                                   "n_boot=200", "boot_seed=3"])
    assert res.exit_code == 0, res.output
    assert "by lead set" in res.output and "limb6" in res.output and "I+II" in res.output
    data = json.loads((out / "results.json").read_text())
    sets = {r["lead_set"]: r for r in data["lead_sets"]}
    assert list(sets) == ["12", "limb6", "I+II", "I", "II"] and sets["limb6"]["leads"] == list(LEADS[:6])
    assert sets["12"]["macro_auc"] == pytest.approx(data["zeroshot"][0]["macro_auc"])  # the same scorer
    # ... with the run's resamples (n_boot, boot_seed), so 12 leads has the main table's interval
    assert sets["12"]["macro_auc_ci"] == pytest.approx(data["zeroshot"][0]["macro_auc_ci"])
    assert all(r["n_records"] == sets["12"]["n_records"] > 6 and r["task"] == "ptbxl_rhythm" for r in sets.values())
    lo, hi = sets["limb6"]["macro_auc_ci"]  # every set carries its bootstrap interval ...
    assert lo <= sets["limb6"]["macro_auc"] <= hi
    diff = sets["limb6"]["vs_12_leads"]  # ... and its paired difference to 12 leads (same resamples)
    assert diff["diff"] == pytest.approx(sets["limb6"]["macro_auc"] - sets["12"]["macro_auc"])
    assert diff["ci"][0] <= diff["diff"] <= diff["ci"][1] and "vs_12_leads" not in sets["12"]
    assert (out / "plots" / "lead_sets.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_bundle), "--task", f"ptbxl_rhythm={shards}",
                                   "--leads", "mlii,I", "--out", str(tmp_path / "two"), "batch_size=8"])
    assert res.exit_code == 0, res.output
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["meta"]["config"]["leads"] == "II,I" and "lead_sets" not in two
    assert two["zeroshot"][0]["macro_auc"] == pytest.approx(sets["I+II"]["macro_auc"])
    from merl.evaluation.leadsets import bundle_lead_sets

    results, table = bundle_lead_sets(tiny_bundle, {"ptbxl_rhythm": str(shards)}, "12,limb6", batch_size=8)
    assert [r.lead_set for r in results] == ["12", "limb6"] and table.row_count == 1
    assert results[1].macro_auc == pytest.approx(sets["limb6"]["macro_auc"])
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_bundle), "--task", f"ptbxl_rhythm={shards}",
                                   "--lead-sets", "12,V9", "--out", str(out)])
    assert isinstance(res.exception, ConfigError) and "V9" in str(res.exception)


# -- the training data path carries the mask --------------------------------------------------


def test_loader_collates_lead_mask_and_drops_leads_on_train_only(tmp_path):
    from ray.data.collate_fn import is_tensor_batch_type

    from merl.training.data.loader import Collate, pad_id_for, preprocess_batch

    masks = [leads_mask(["II", "V5"]), None, None, None]
    rows = [CanonicalRecord(id=f"t:{i}", source="t", signal=canonical_signal(seed=i).astype(np.float32),
                            report="sinus rhythm normal ecg", split="train", lead_mask=m).to_row()
            for i, m in enumerate(masks)]
    batch = {k: np.asarray(v, dtype=object) for k, v in rows_to_table(rows).to_pydict().items()}
    cfg = DataConfig(fs=100, n_samples=200, lead_order="mimic")
    out = preprocess_batch(batch, split="train", data_cfg=cfg, text_model="default")
    assert out["lead_mask"].dtype == bool and out["lead_mask"][0].sum() == 2 and out["lead_mask"][1:].all()
    assert np.all(out["ecg"][0][~out["lead_mask"][0]] == 0)
    col = Collate(pad_id_for("default"))(out)
    assert is_tensor_batch_type(col) and col["lead_mask"].dtype == torch.bool and col["lead_mask"].shape == (4, 12)
    drop = cfg.model_copy(update={"lead_dropout": LeadDropoutConfig(p=1.0, families={"limb": 1.0})})
    out = preprocess_batch(batch, split="train", data_cfg=drop, text_model="default")
    limb = model_lead_mask(leads_mask(LEAD_SETS["limb6"])[None], 1, cfg)[0]
    assert (out["lead_mask"][1:] == limb).all() and out["lead_mask"][0].sum() == 1  # II+V5 -> II
    val = preprocess_batch({**batch, "split": np.asarray(["val"] * 4, dtype=object)}, split="val", data_cfg=drop,
                           text_model="default")
    assert val["lead_mask"][1:].all()  # never on the validation split


def test_model_forward_takes_the_mask_and_old_bundles_load(tmp_path):
    """MERLModel passes lead_mask to its tower; a bundle written before lead masks (no
    lead-absence weights) loads with zeros: the model it was."""
    from safetensors.torch import load_file, save_file

    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.export import WEIGHTS, load_bundle, save_bundle
    from merl.training.model import build_model

    cfg = TrainConfig(model=ModelConfig(width=8, freeze_text_layers=6, proj_dim=32, proj_hidden=32),
                      data=DataConfig(fs=100, n_samples=1000, max_text_tokens=32))
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss).eval()
    x = torch.randn(2, 12, 1000)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 3:] = False
    ids = torch.ones(2, 4, dtype=torch.long)
    with torch.no_grad():
        out = model(x, ids, torch.ones_like(ids), mask)
        assert torch.allclose(out["ecg"], model.encode_ecg(x, lead_mask=mask), atol=1e-5)
        assert torch.allclose(out["ecg"][1], model.encode_ecg(x)[1], atol=1e-5)  # all present = no mask
    bundle = save_bundle(model, cfg, tmp_path / "b")
    weights = load_file(str(bundle / WEIGHTS))
    old = {k: v for k, v in weights.items() if "lead_absent" not in k}
    assert len(old) == len(weights) - 1
    save_file(old, str(bundle / WEIGHTS))
    loaded = load_bundle(bundle).model
    assert torch.count_nonzero(loaded.ecg_encoder.absence.lead_absent.weight) == 0


def test_linear_probe_uses_only_the_given_leads(tiny_bundle, tmp_path, monkeypatch):
    """`merl evaluate --leads I --linear-probe` probes features of lead I alone (fit and test)."""
    from eval_fixtures import write_shards

    import merl.training.embed as embed
    from merl.evaluation.config import EvalConfig
    from merl.evaluation.run import run_evaluation

    shards = write_shards(tmp_path / "shards")
    seen = []
    real = embed.embed_ecgs

    def spy(*args, **kwargs):
        if kwargs.get("features") == "backbone":
            seen.append(kwargs.get("leads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(embed, "embed_ecgs", spy)
    cfg = EvalConfig.model_validate({"model": str(tiny_bundle), "tasks": {"ptbxl_rhythm": str(shards)},
                                     "leads": "I", "linear_probe": True, "probe_fractions": [1.0],
                                     "batch_size": 8, "n_boot": 10, "probe_train_split": "test"})
    run_evaluation(cfg)
    assert len(seen) == 2 and all(m is not None and m.tolist() == [True] + [False] * 11 for m in seen)
