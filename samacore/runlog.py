"""Run logging: console logger, TensorBoard scalars and a plain CSV / JSON-lines metrics log per run."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
from typing import Any, Dict, List


def get_logger(name: str = "sama") -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else str(v)
    return v


class RunLogger:
    """Writes every row to ``metrics.jsonl`` (one JSON object per line) and ``metrics.csv`` (columns grow as
    new keys appear: the file is rewritten then), and scalars to TensorBoard when available."""

    def __init__(self, run_dir: str, use_tensorboard: bool = True, enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.rows: List[Dict[str, Any]] = []
        self.writer = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))
            except Exception as e:  # tensorboard is optional at run time
                get_logger().warning("TensorBoard disabled (%s); metrics still go to metrics.csv", e)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def row(self, row: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: _plain(v) for k, v in row.items()}
        self.rows.append(row)
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        columns: List[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        tmp = os.path.join(self.run_dir, ".metrics.csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, os.path.join(self.run_dir, "metrics.csv"))

    def write_json(self, name: str, obj: Any) -> str:
        path = os.path.join(self.run_dir, name)
        if self.enabled:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=2, default=_plain)
            os.replace(tmp, path)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
