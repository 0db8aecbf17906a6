"""The one home of "local path or URI?" for storage locations (shards, prompts, run folders).

Storage settings accept a local path or any pyarrow filesystem URI (``s3://``, ``gs://``,
``hdfs://``...). A URI is ``scheme://...`` with a scheme other than ``file``: ``file://``
names a local path, so it gets local treatment (made absolute, checked on disk, written by
local-only sinks) instead of being skipped as remote. Ray addresses (``ray://``) are not
storage and are not handled here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import pyarrow.fs

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _scheme(path: str) -> str | None:
    m = _SCHEME.match(str(path))
    return m.group(1).lower() if m else None


def is_uri(path: str | os.PathLike) -> bool:
    """True for remote storage (``s3://bucket/key``); False for local paths and ``file://``."""
    return _scheme(str(path)) not in (None, "file")


def local_path(path: str | os.PathLike) -> str:
    """A local path as a plain path string: ``file:///a%20b`` -> ``/a b``; other paths unchanged.

    Raises ValueError for a remote URI, which has no local path."""
    path = str(path)
    scheme = _scheme(path)
    if scheme is None:
        return path
    if scheme != "file":
        raise ValueError(f"{path!r} is a remote URI, not a local path")
    parsed = urlparse(path)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"{path!r}: file:// URIs on another host are not supported")
    return unquote(parsed.path)


def absolute(path: str | os.PathLike) -> str:
    """Remote URIs as given; local paths (``file://`` included) absolute, ``~`` expanded.

    Ray workers and Tune trials run in other working directories, so a relative path that
    is right on the driver is wrong there."""
    if is_uri(path):
        return str(path)
    return str(Path(local_path(path)).expanduser().resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base`` extended by relative ``parts``, keeping ``base``'s form (URI stays URI).

    Never through pathlib for ``scheme://`` bases, which would collapse ``s3://b`` to
    ``s3:/b``; a URI's ``?query`` (e.g. ``?region=...``) stays at the end. Leading and
    trailing slashes of ``parts`` are ignored."""
    base = str(base)
    segs = [s for s in (str(p).strip("/") for p in parts) if s]
    if _scheme(base) is None:
        return os.path.join(base, *segs)
    head, q, query = base.partition("?")
    if segs:
        head = (head if head.endswith("/") else head + "/") + "/".join(segs)
    return head + q + query


def filesystem(path: str | os.PathLike) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem holding ``path`` and the path within it.

    Local paths (``file://`` included) are returned as plain paths, relative ones unchanged,
    since pyarrow's URI parser rejects relative paths."""
    import pyarrow.fs as pafs

    if is_uri(path):
        return pafs.FileSystem.from_uri(str(path))
    return pafs.LocalFileSystem(), local_path(path)

