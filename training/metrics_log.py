"""Per-run metric sinks, rank 0: TensorBoard event files + ``metrics.csv`` + ``metrics.jsonl``
in ``<run>/logs``, and the experiment tracker (MLflow / W&B, :mod:`merl.training.tracking`).

The files sit beside Ray's checkpoints, so one folder holds a run's curves, on any storage:
for a remote run folder (``s3://...``) they are written to a local folder and uploaded after
each validation, at most every :data:`UPLOAD_EVERY_S` seconds in between, and on close. A
restarted run first downloads what the previous attempt uploaded, so the files keep growing.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from merl.core.io import copy_dir, exists
from merl.core.uri import is_uri, join, local_path

log = logging.getLogger(__name__)

UPLOAD_EVERY_S = 60.0


class MetricsLogger:
    """Append-only metric log; a no-op on ranks other than 0 or without a run folder."""

    def __init__(self, run_dir: str | None, rank: int = 0, tracking: dict[str, Any] | None = None):
        self.enabled = bool(run_dir) and rank == 0
        self._tb = None
        self._tracker = None
        self._remote: str | None = None
        self._uploaded = 0.0
        if not self.enabled:
            return
        if is_uri(run_dir):
            self._remote = join(run_dir, "logs")
            self.dir = Path(tempfile.mkdtemp(prefix="merl-logs-"))
            if exists(self._remote):
                copy_dir(self._remote, self.dir)
        else:
            self.dir = Path(local_path(run_dir)) / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        except ImportError:  # tensorboard is a dependency; keep logging CSV/JSONL if it is broken
            log.warning("tensorboard unavailable; logging CSV/JSONL only")
        if tracking:
            from merl.training.tracking import Tracker

            self._tracker = Tracker(tracking)

    def log(self, step: int, metrics: dict[str, Any], phase: str = "train") -> None:
        if not self.enabled:
            return
        row = {"time": round(time.time(), 3), "phase": phase, "step": step,
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        csv_path = self.dir / f"metrics_{phase}.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        values = {k: float(v) for k, v in row.items() if k not in ("time", "phase", "step")}
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{phase}/{k}", v, step)
            self._tb.flush()
        if self._tracker is not None:
            self._tracker.log(step, values)
        if self._remote and (phase != "train" or time.time() - self._uploaded > UPLOAD_EVERY_S):
            self.upload()

    def upload(self) -> None:
        """Copy the local log folder to the remote run folder (no-op for a local run)."""
        if not self._remote:
            return
        try:
            copy_dir(self.dir, self._remote)
            self._uploaded = time.time()
        except OSError as e:  # storage hiccup: the next upload carries these rows too
            log.warning("could not upload logs to %s: %s", self._remote, e)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._tracker is not None:
            self._tracker.close()
        if self.enabled:
            self.upload()
