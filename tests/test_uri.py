"""merl.core.uri: one rule for "local path or URI" (file:// is local; s3:// and co. are not)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from merl.core.uri import absolute, filesystem, is_uri, join, local_path


@pytest.mark.parametrize("path, expected", [
    ("runs", False), ("/abs/runs", False), ("~/runs", False), ("runs/a://b", False), ("", False),
    ("file:///tmp/runs", False), ("FILE:///tmp/runs", False),
    ("s3://bucket/key", True), ("gs://b/k", True), ("hdfs://nn:8020/x", True), ("S3://bucket", True),
])
def test_is_uri(path, expected):
    assert is_uri(path) is expected


def test_is_uri_accepts_pathlike(tmp_path):
    assert is_uri(tmp_path) is False


def test_local_path():
    assert local_path("runs/x") == "runs/x"
    assert local_path("file:///tmp/a%20b/x") == "/tmp/a b/x"
    assert local_path("file://localhost/tmp/x") == "/tmp/x"
    with pytest.raises(ValueError, match="remote URI"):
        local_path("s3://bucket/key")
    with pytest.raises(ValueError, match="another host"):
        local_path("file://otherhost/tmp/x")


def test_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = str(tmp_path.resolve())
    assert absolute("runs") == os.path.join(real, "runs")
    assert absolute(Path("a") / "b") == os.path.join(real, "a", "b")
    assert absolute(f"file://{real}/runs") == os.path.join(real, "runs")
    monkeypatch.setenv("HOME", real)
    assert absolute("~/runs") == os.path.join(real, "runs")
    assert absolute("s3://bucket/key") == "s3://bucket/key"  # untouched, not s3:/bucket/key


def test_join():
    assert join("s3://bucket/key", "x") == "s3://bucket/key/x"
    assert join("s3://bucket/key/", "/x/", "y") == "s3://bucket/key/x/y"
    assert join("s3://bucket", "x") == "s3://bucket/x"
    assert join("s3://bucket/key?region=eu-west-1", "x") == "s3://bucket/key/x?region=eu-west-1"
    assert join("file:///tmp/runs", "x") == "file:///tmp/runs/x"
    assert join("file:///", "x") == "file:///x"
    assert join("runs", "x", "y") == os.path.join("runs", "x", "y")
    assert join("/abs/runs/", "x") == "/abs/runs/x"
    assert join("/abs", "/x") == "/abs/x"  # parts are relative segments, never a new root
    assert join("s3://bucket/key") == "s3://bucket/key"


def test_filesystem_local(tmp_path):
    fs, p = filesystem(str(tmp_path))
    assert isinstance(fs, pafs.LocalFileSystem) and p == str(tmp_path)
    fs, p = filesystem("relative/dir")
    assert isinstance(fs, pafs.LocalFileSystem) and p == "relative/dir"
    (tmp_path / "a b").mkdir()
    fs, p = filesystem(f"file://{tmp_path}/a%20b")
    assert isinstance(fs, pafs.LocalFileSystem) and p == f"{tmp_path}/a b"
    assert fs.get_file_info(p).type == pafs.FileType.Directory


def test_filesystem_s3_without_network():
    # An explicit region keeps pyarrow from asking AWS for the bucket's region (a network call).
    if not hasattr(pafs, "S3FileSystem"):
        pytest.skip("pyarrow built without S3")
    fs, p = filesystem("s3://bucket/key?region=us-east-1")
    assert fs.type_name == "s3" and p == "bucket/key"
