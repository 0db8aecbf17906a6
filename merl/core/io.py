"""Atomic writes and small reads at local paths or URIs: a crash mid-write never leaves a
half-written shard, checkpoint, report or index where a reader could see it.

Every location accepted here is a local path, a ``file://`` URI or a pyarrow filesystem URI
(``s3://``, ``gs://``, ...), through :func:`merl.core.uri.filesystem`. Local files are
written to a temporary sibling, fsynced and renamed over the target. Object stores have no
rename, but a single object PUT (or a completed multipart upload) appears whole or not at
all: the bytes are produced completely first (in memory or a local temporary file), then
sent with one write to one output stream. A failure before that write leaves no object; a
failed upload is never completed.

Folder artefacts (export bundle, knowledge index) are uploaded with :func:`upload_dir`:
their marker file goes last and is removed first on overwrite, and readers require it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from merl.core.uri import filesystem, is_uri, join, local_path

_CHUNK = 1 << 20
_OBJECT_STORES = ("s3", "gcs")  # no directories to create: a key's prefix needs nothing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a local temporary file; on success it becomes ``path`` (renamed, or uploaded to a URI).

    On an exception inside the block nothing is written at ``path``."""
    if is_uri(path):
        with tempfile.TemporaryDirectory(prefix="merl-upload-") as d:
            tmp = Path(d) / PurePosixPath(str(path).partition("?")[0]).name
            yield tmp
            _put_file(tmp, str(path))
        return
    path = Path(local_path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; shared storage needs the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _put(uri: str, data) -> None:
    """One object from one buffer, in one write: the store commits it on close, whole.

    If the write fails, the stream holds the error and its close never completes the upload."""
    fs, p = filesystem(uri)
    if fs.type_name not in _OBJECT_STORES:
        fs.create_dir(str(PurePosixPath(p).parent), recursive=True)
    out = fs.open_output_stream(p)
    out.write(data)
    out.close()


def _put_file(local: Path, uri: str) -> None:
    """Upload a finished local file as one write (memory-mapped: no copy of a large shard in RAM)."""
    import pyarrow as pa

    if local.stat().st_size == 0:
        _put(uri, b"")
        return
    with pa.memory_map(str(local), "r") as mm:
        _put(uri, mm.read_buffer())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    if is_uri(path):
        _put(str(path), data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# -- reads ------------------------------------------------------------------------------


def _info(path: str | os.PathLike):
    fs, p = filesystem(path)
    return fs.get_file_info(p)


def exists(path: str | os.PathLike) -> bool:
    import pyarrow.fs as pafs

    return _info(path).type != pafs.FileType.NotFound


def is_file(path: str | os.PathLike) -> bool:
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.File


def is_dir(path: str | os.PathLike) -> bool:
    """A local folder, or a URI prefix holding at least one object."""
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.Directory


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file; FileNotFoundError when it is absent (locally and at a URI)."""
    if not is_uri(path):
        return Path(local_path(path)).read_bytes()
    fs, p = filesystem(path)
    try:
        with fs.open_input_stream(p) as fh:
            return fh.read()
    except FileNotFoundError:
        raise
    except OSError as e:  # pyarrow reports some stores' missing keys as a plain OSError
        if not exists(path):
            raise FileNotFoundError(f"{path}: no such file") from e
        raise


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def read_text_if_exists(path: str | os.PathLike, encoding: str = "utf-8") -> str | None:
    """The file's text, or None when there is none (a record a run may not have written yet)."""
    try:
        return read_text(path, encoding)
    except FileNotFoundError:
        return None


def listdir(path: str | os.PathLike, pattern: str | None = None) -> list[str]:
    """Names of the entries directly in folder ``path`` (sorted; optionally ``fnmatch``-filtered); [] if absent."""
    import pyarrow.fs as pafs

    fs, p = filesystem(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    names = sorted(i.base_name for i in infos)
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def remove(path: str | os.PathLike, missing_ok: bool = True) -> None:
    """Delete one file (or object)."""
    if not is_uri(path):
        Path(local_path(path)).unlink(missing_ok=missing_ok)
        return
    fs, p = filesystem(path)
    try:
        fs.delete_file(p)
    except FileNotFoundError:
        if not missing_ok:
            raise


def makedirs(path: str | os.PathLike) -> None:
    """Create a local folder (and its parents); object stores need none, so URIs are a no-op there."""
    if not is_uri(path):
        Path(local_path(path)).mkdir(parents=True, exist_ok=True)
        return
    fs, p = filesystem(path)
    if fs.type_name not in _OBJECT_STORES:
        fs.create_dir(p, recursive=True)


def sha256_file(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    h = hashlib.sha256()
    if is_uri(path):
        fs, p = filesystem(path)
        with fs.open_input_stream(p) as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        return h.hexdigest()
    with open(local_path(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- folders ----------------------------------------------------------------------------


def _local_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _remote_files(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, p = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    base = PurePosixPath(p)
    return sorted(PurePosixPath(i.path).relative_to(base).as_posix() for i in infos if i.type == pafs.FileType.File)


def upload_dir(src: str | os.PathLike, uri: str, last: Iterable[str] = (), prune: bool = True) -> None:
    """Copy local folder ``src`` to ``uri`` file by file (each one atomic), the ``last`` files last.

    The ``last`` files (a folder's marker, e.g. its manifest) are deleted at ``uri`` first, so
    while the upload runs the folder reads as absent, never as old marker + new files. With
    ``prune``, files at ``uri`` that ``src`` lacks (an earlier version's) are deleted too."""
    src = Path(src)
    last = list(last)
    files = _local_files(src)
    for rel in last:
        if rel not in files:
            raise FileNotFoundError(f"{src}: marker {rel} was not written")
        remove(join(uri, rel))
    if prune:
        for rel in set(_remote_files(uri)) - set(files):
            remove(join(uri, rel))
    for rel in [f for f in files if f not in last] + last:
        _put_file(src / rel, join(uri, rel))


def copy_dir(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy a folder's files between any two locations (local paths or URIs), overwriting."""
    import pyarrow.fs as pafs

    src_fs, s = filesystem(src)
    dest_fs, d = filesystem(dest)
    dest_fs.create_dir(d, recursive=True)
    pafs.copy_files(s, d, source_filesystem=src_fs, destination_filesystem=dest_fs)


def download_dir(uri: str, dest: str | os.PathLike) -> Path:
    """Copy folder ``uri`` (every file below it) into local folder ``dest``."""
    import pyarrow.fs as pafs

    fs, p = filesystem(uri)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(p, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dest


@contextlib.contextmanager
def local_copy(path: str | os.PathLike, marker: str | None = None) -> Iterator[Path]:
    """A local folder with the contents of ``path``: itself when local, else a temporary download.

    ``marker``: a file the folder must hold (checked before downloading), else FileNotFoundError."""
    if marker is not None and not is_file(join(path, marker)):
        raise FileNotFoundError(f"{path}: no {marker}")
    if not is_uri(path):
        yield Path(local_path(path))
        return
    d = tempfile.mkdtemp(prefix="merl-download-")
    try:
        yield download_dir(str(path), Path(d) / "copy")
    finally:
        shutil.rmtree(d, ignore_errors=True)
