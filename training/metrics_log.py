"""Metric sinks for rank 0: TensorBoard event files + ``metrics.csv`` + ``metrics.jsonl``.

Written into the run folder beside Ray's checkpoints, so one directory holds a run's curves.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

from merl.core.uri import is_uri, local_path

log = logging.getLogger(__name__)


class MetricsLogger:
    """Append-only metric log; a no-op on ranks other than 0 or without a local run folder."""

    def __init__(self, run_dir: str | None, rank: int = 0):
        self.enabled = bool(run_dir) and rank == 0 and not is_uri(run_dir)
        self._tb = None
        self._csv_fields: list[str] | None = None
        if not self.enabled:
            return
        self.dir = Path(local_path(run_dir)) / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        except ImportError:  # tensorboard is a dependency; keep logging CSV/JSONL if it is broken
            log.warning("tensorboard unavailable; logging CSV/JSONL only")

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
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("time", "phase", "step"):
                    self._tb.add_scalar(f"{phase}/{k}", v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
