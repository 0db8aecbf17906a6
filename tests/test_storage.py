"""merl.core.io at URIs against a real S3-compatible server (moto, loopback): atomic writes,
reads, folder uploads with the marker last; shards, manifests and the knowledge index on s3://."""

from __future__ import annotations

import hashlib
import json

import pytest

from merl.core import io
from merl.core.uri import join


def test_write_read_list_on_s3(s3):
    base = s3.uri()
    io.atomic_write_text(join(base, "a.json"), '{"x": 1}')
    io.atomic_write_bytes(join(base, "sub", "b.bin"), b"\x00\x01" * 1000)
    with io.atomic_path(join(base, "c.txt")) as tmp:
        tmp.write_text("from a local temp file")
    assert io.read_text(join(base, "a.json")) == '{"x": 1}'
    assert io.read_bytes(join(base, "sub", "b.bin")) == b"\x00\x01" * 1000
    assert io.read_text(join(base, "c.txt")) == "from a local temp file"
    assert io.sha256_file(join(base, "sub", "b.bin")) == hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
    assert io.is_file(join(base, "a.json")) and not io.is_dir(join(base, "a.json"))
    assert io.is_dir(join(base, "sub")) and io.exists(base)
    assert io.listdir(base) == ["a.json", "c.txt", "sub"]
    assert io.listdir(base, "*.json") == ["a.json"]
    assert io.listdir(join(base, "nothing-here")) == []
    io.atomic_write_text(join(base, "a.json"), "replaced")
    assert io.read_text(join(base, "a.json")) == "replaced"
    io.remove(join(base, "a.json"))
    io.remove(join(base, "a.json"))  # missing_ok
    assert not io.exists(join(base, "a.json"))
    with pytest.raises(FileNotFoundError):
        io.read_text(join(base, "a.json"))


def test_failed_write_leaves_no_partial_object(s3):
    base = s3.uri()
    target = join(base, "shard.parquet")
    with pytest.raises(RuntimeError, match="writer died"):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a shard")
            raise RuntimeError("writer died")
    assert not io.exists(target) and io.listdir(base) == []
    io.atomic_write_bytes(target, b"good v1")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"v2, never finished")
            raise RuntimeError("writer died")
    assert io.read_bytes(target) == b"good v1"  # the previous object is untouched
    with pytest.raises(OSError):
        io.atomic_write_bytes("s3://no-such-bucket-merl/x", b"data")


def test_upload_dir_marker_last_prunes_and_a_broken_upload_reads_as_absent(s3, tmp_path, monkeypatch):
    src = tmp_path / "bundle"
    (src / "text_model").mkdir(parents=True)
    (src / "weights.bin").write_bytes(b"w1")
    (src / "text_model" / "vocab.txt").write_text("a\nb\n")
    (src / "old.txt").write_text("from v1")
    (src / "MARKER.json").write_text('{"v": 1}')
    uri = s3.uri()
    order = []
    real_put = io._put_file
    monkeypatch.setattr(io, "_put_file", lambda local, dest: (order.append(dest.rsplit("/", 1)[1]), real_put(local, dest)))
    io.upload_dir(src, uri, last=["MARKER.json"])
    assert order[-1] == "MARKER.json" and sorted(order) == ["MARKER.json", "old.txt", "vocab.txt", "weights.bin"]
    with io.local_copy(uri, marker="MARKER.json") as local:
        assert (local / "text_model" / "vocab.txt").read_text() == "a\nb\n"

    (src / "old.txt").unlink()
    (src / "weights.bin").write_bytes(b"w2")
    (src / "MARKER.json").write_text('{"v": 2}')

    def dies_on_weights(local, dest):
        if dest.endswith("weights.bin"):
            raise OSError("connection reset")
        real_put(local, dest)

    monkeypatch.setattr(io, "_put_file", dies_on_weights)
    with pytest.raises(OSError, match="connection reset"):
        io.upload_dir(src, uri, last=["MARKER.json"])
    assert not io.exists(join(uri, "MARKER.json")) and not io.exists(join(uri, "old.txt"))
    with pytest.raises(FileNotFoundError, match="MARKER.json"):
        with io.local_copy(uri, marker="MARKER.json"):
            pass
    monkeypatch.setattr(io, "_put_file", real_put)
    io.upload_dir(src, uri, last=["MARKER.json"])
    assert json.loads(io.read_text(join(uri, "MARKER.json"))) == {"v": 2}
    assert io.read_bytes(join(uri, "weights.bin")) == b"w2"


def test_local_paths_and_file_uris(tmp_path):
    uri = f"file://{tmp_path}/d/x.txt"
    io.atomic_write_text(uri, "local")
    assert (tmp_path / "d" / "x.txt").read_text() == "local"
    assert io.read_text(uri) == "local" and io.is_file(uri) and io.is_dir(f"file://{tmp_path}/d")
    assert io.listdir(tmp_path / "d") == ["x.txt"]
    assert io.sha256_file(uri) == hashlib.sha256(b"local").hexdigest()
    with io.local_copy(f"file://{tmp_path}/d") as local:
        assert local == tmp_path / "d"
    io.remove(uri)
    assert not io.exists(uri)


def test_shards_manifest_and_scans_on_s3(s3):
    import numpy as np
    from test_train_pipeline import class_signal

    from merl.training.data.manifest import Counts, Manifest, ShardInfo, read_manifest, write_manifest
    from merl.training.data.scan import iter_signal_batches, read_label_table
    from merl.training.data.schema import CanonicalRecord
    from merl.training.data.shards import done_path, is_complete, read_shard, write_done, write_shard

    root = s3.uri()
    rng = np.random.default_rng(0)
    rows = [CanonicalRecord(id=f"synthetic:{i}", source="synthetic", signal=class_signal("NORM", rng, 500),
                            report="sinus rhythm.", labels=["NORM"], split="train" if i < 3 else "val").to_row()
            for i in range(4)]
    shard = join(root, "shard-00000.parquet")
    sha = write_shard(shard, rows)
    assert sha == io.sha256_file(shard)
    assert done_path(shard) == join(root, "shard-00000.done.json")
    write_done(shard, {"fingerprint": "f", "shard": {"sha256": sha}, "quarantined": []})
    assert is_complete(shard, "f") is not None and is_complete(shard, "other") is None
    assert read_shard(shard).num_rows == 4
    write_manifest(root, Manifest(dataset="synthetic", shards=[ShardInfo(file="shard-00000.parquet", rows=4, sha256=sha,
                                                                          splits={"train": 3, "val": 1})],
                                  counts=Counts(records=4, by_split={"train": 3, "val": 1})))
    m = read_manifest(root)
    assert m.shard_paths(root) == [shard]
    assert sorted(read_label_table(root, ["train"]).column("id").to_pylist()) == [f"synthetic:{i}" for i in range(3)]
    assert [b.num_rows for b in iter_signal_batches(root, "val")] == [1]
    with pytest.raises(FileNotFoundError, match="not a prepared shard folder"):
        read_manifest(s3.uri())


def test_knowledge_index_save_load_on_s3(s3, tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from merl.core.config import ConfigError
    from merl.knowledge.index import KnowledgeIndex, build_index

    (tmp_path / "notes.md").write_text("# Atrial fibrillation\nIrregularly irregular rhythm without P waves.\n\n"
                                       "# Left bundle branch block\nWide QRS with a notched R wave in V6.\n")
    emb = DeterministicFakeEmbedding(size=32)
    index = build_index(None, [tmp_path / "notes.md"], embeddings=emb)
    uri = s3.uri()
    assert index.save(uri) == uri
    assert io.listdir(uri) == ["docstore.jsonl", "index.faiss", "manifest.json"]
    loaded = KnowledgeIndex.load(uri, embeddings=emb)
    assert len(loaded) == len(index)
    q = "wide QRS"
    assert [(d.id, round(s, 5)) for d, s in loaded.search(q, k=2)] == [(d.id, round(s, 5)) for d, s in index.search(q, k=2)]
    loaded.save(uri)  # replacing an index in place is allowed
    other = s3.uri()
    io.atomic_write_text(join(other, "precious.txt"), "not an index")
    with pytest.raises(ConfigError, match="not a knowledge index"):
        index.save(other)
    with pytest.raises(FileNotFoundError, match="missing manifest.json"):
        KnowledgeIndex.load(other, embeddings=emb)


def test_storage_location_reroots_ray_paths():
    from merl.training.trainer import storage_location

    assert storage_location("bkt/runs/r/checkpoint_step00000002", "s3://bkt/runs") == \
        "s3://bkt/runs/r/checkpoint_step00000002"
    assert storage_location("bkt/runs/r", "s3://bkt/runs?region=eu-west-1") == "s3://bkt/runs/r?region=eu-west-1"
    assert storage_location("s3://bkt/runs/r", "s3://bkt/runs") == "s3://bkt/runs/r"
    assert storage_location("/abs/runs/r", "/abs/runs") == "/abs/runs/r"
    with pytest.raises(ValueError, match="not under"):
        storage_location("other/r", "s3://bkt/runs")


def test_bundle_provenance_and_text_model_at_a_uri(s3, tmp_path):
    """save_bundle(info=...) at s3:// builds locally and uploads, train_config.json last;
    load_bundle and merl.load read source.json and text_model/merl_source.json from the
    download; a re-export without info prunes the stale source.json. A prompts file and a
    reference checkpoint are read at URIs too."""
    from io import BytesIO

    import numpy as np
    import torch

    import merl
    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.data.config import DataConfig
    from merl.training.export import CONFIG, SOURCE, TEXT_DIR, TEXT_SOURCE, load_bundle, save_bundle
    from merl.training.model import build_model
    from merl.training.reference import load_reference_state_dict
    from merl.training.zeroshot import load_prompts

    cfg = TrainConfig(model=ModelConfig(width=8, freeze_text_layers=6, proj_dim=32, proj_hidden=32),
                      data=DataConfig(fs=100, n_samples=1000, max_text_tokens=32))
    uri = s3.uri()
    assert save_bundle(build_model(cfg.model, cfg.loss), cfg, uri, info={"source": "test"}) == uri
    assert all(io.is_file(join(uri, f)) for f in (CONFIG, SOURCE, f"{TEXT_DIR}/{TEXT_SOURCE}"))
    bundle = load_bundle(uri)
    assert bundle.info == {"source": "test"} and bundle.text_model == cfg.model.text_model
    loaded = merl.load(uri)
    assert loaded.info == {"source": "test"}
    signals = np.random.default_rng(0).normal(scale=0.5, size=(2, 12, 1000)).astype(np.float32)
    assert loaded.classify(signals, 100, labels=["normal ecg", "atrial fibrillation"]).probs.shape == (2, 2)
    save_bundle(bundle.model, bundle.config, uri)  # re-export from the downloaded copy, without provenance
    assert not io.exists(join(uri, SOURCE))
    again = load_bundle(uri)
    assert again.info == {} and again.text_model == cfg.model.text_model  # the original name survives

    prompts = join(s3.uri(), "prompts.json")
    io.atomic_write_text(prompts, json.dumps({"AFIB": "atrial fibrillation"}))
    assert load_prompts(prompts) == {"AFIB": "atrial fibrillation"}
    ckpt = join(s3.uri(), "ckpt.pth")
    buf = BytesIO()
    torch.save({"model_state_dict": {"module.w": torch.ones(2)}}, buf)
    io.atomic_write_bytes(ckpt, buf.getvalue())
    assert set(load_reference_state_dict(ckpt)) == {"w"}
