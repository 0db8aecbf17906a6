"""A real S3-compatible server on loopback (moto's server mode) for storage tests.

The server runs in its own process: pyarrow calls that hold the GIL (a stream closed from its
destructor) would otherwise deadlock against an in-process server thread. The AWS variables
are set when the test process starts (:func:`configure_env`), before any Ray cluster does, so
the raylet and every Ray worker inherit the endpoint and credentials, as they would inherit
the real ones on a cluster. pyarrow (and so Ray Data / Ray Train) honours ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

BUCKET = "merl-test"


@dataclass
class S3Server:
    endpoint: str
    bucket: str = BUCKET

    def uri(self, *parts: str) -> str:
        """A fresh ``s3://`` location (unique per call unless ``parts`` name it)."""
        return "/".join([f"s3://{self.bucket}", *(parts or [uuid.uuid4().hex[:12]])])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure_env(environ=os.environ) -> str:
    """Point every AWS client of this process tree at a loopback endpoint; returns it."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=endpoint)
    environ.pop("AWS_PROFILE", None)
    environ.pop("AWS_SESSION_TOKEN", None)
    return endpoint


def start_server(endpoint: str, timeout_s: float = 30.0) -> subprocess.Popen:
    """Start ``moto.server`` on ``endpoint`` and wait until it answers."""
    port = int(endpoint.rsplit(":", 1)[1])
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"moto server did not listen on {endpoint} within {timeout_s:.0f}s")


def create_bucket(name: str = BUCKET) -> None:
    import pyarrow.fs as pafs

    # The constructor, unlike FileSystem.from_uri, does not read AWS_ENDPOINT_URL.
    pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(name)
