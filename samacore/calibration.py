"""Mapping raw quality scores to the MOS scale of a model's training set (shared by the VQA and IQA trees).

SAMA models are trained with correlation losses (PLCC + rank), so their raw output has an arbitrary offset and
scale. A checkpoint can carry, in its ``label_stats``, the first two moments of its training labels and of its
own test-mode scores on the same training items::

    {"mean", "std", "n"}            training labels (population std)
    {"pred_mean", "pred_std"}       the saved model's raw scores on those items

and a raw score ``s`` is then mapped by moment matching::

    calibrated = mean + std * (s - pred_mean) / pred_std

This is the affine map evaluation applies before PLCC / RMSE (predictions rescaled to the labels' mean and std),
with statistics taken from training items only, so no test label leaks into it. It fixes offset and scale only:
ranking quality is unchanged, and on another database the value stays on the *training* database's scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Calibration", "calibration_stats", "calibration_from_info", "CALIBRATION_KEYS"]

#: ``label_stats`` entries a checkpoint needs for calibration
CALIBRATION_KEYS = ("mean", "std", "pred_mean", "pred_std")


@dataclass(frozen=True)
class Calibration:
    """``calibrated = label_mean + label_std * (score - pred_mean) / pred_std``."""

    label_mean: float
    label_std: float
    pred_mean: float
    pred_std: float
    n: int = 0

    def __call__(self, score: float) -> float:
        return self.label_mean + self.label_std * (float(score) - self.pred_mean) / self.pred_std

    def describe(self, items: str = "items") -> str:
        return (f"calibrated = {self.label_mean:.6g} + {self.label_std:.6g} * (score {_minus(self.pred_mean)}) / "
                f"{self.pred_std:.6g}  (training labels' mean/std and the model's score mean/std on the same "
                f"{self.n} training {items})")


def _minus(value: float) -> str:
    """``- v`` for ``v >= 0``, ``+ |v|`` for a negative one (never ``- -v``)."""
    return f"- {abs(value):.6g}" if value >= 0 or math.isnan(value) else f"+ {-value:.6g}"


def calibration_stats(preds: Sequence[float], labels: Sequence[float], source: str = "") -> Dict[str, Any]:
    """The ``label_stats`` a trainer stores: label moments plus the model's raw-score moments on the same items.

    Non-finite pairs are left out (a skipped item has no score). ``source`` says how the scores were made.
    """
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"calibration_stats: {p.size} scores for {y.size} labels")
    keep = np.isfinite(p) & np.isfinite(y)
    p, y = p[keep], y[keep]
    if p.size == 0:
        raise ValueError("calibration_stats: no item with both a finite score and a finite label")
    stats: Dict[str, Any] = {"mean": float(y.mean()), "std": float(y.std()), "n": int(y.size),
                             "pred_mean": float(p.mean()), "pred_std": float(p.std())}
    if source:
        stats["pred_source"] = source
    return stats


def calibration_from_info(info: Mapping[str, Any], trainer: str = "this project's trainer") -> Tuple[Optional[Calibration], str]:
    """``(Calibration or None, note)`` from a checkpoint's non-weight entries (its ``label_stats``).

    The note says why there is no calibration (no statistics, incomplete ones, a constant-score model) or, when
    there is one, the mapping itself.
    """
    stats = info.get("label_stats") if isinstance(info, Mapping) else None
    if not isinstance(stats, Mapping):
        if isinstance(info, Mapping) and isinstance(info.get("sama"), Mapping):  # this project's file, mid-run
            why = ("training stores them when it ends; this file was saved before that: a resume state or an "
                   "unfinished run's model")
        else:
            why = f"not written by {trainer}"
        return None, f"the checkpoint has no label_stats ({why}): calibrated column left empty"
    missing = [k for k in CALIBRATION_KEYS
               if isinstance(stats.get(k), bool) or not isinstance(stats.get(k), (int, float))]
    if missing:
        return None, (f"the checkpoint's label_stats lack {', '.join(missing)} (the trainer that wrote it did not "
                      "store the model's score statistics on its training set): calibrated column left empty")
    mean, std, pmean, pstd = (float(stats[k]) for k in CALIBRATION_KEYS)
    if not all(math.isfinite(v) for v in (mean, std, pmean, pstd)) or pstd <= 0 or std < 0:
        return None, (f"the checkpoint's label_stats cannot calibrate (score std {pstd:g}, label std {std:g}: "
                      "the model gave its training items one constant score): calibrated column left empty")
    cal = Calibration(mean, std, pmean, pstd, int(stats.get("n", 0) or 0))
    return cal, cal.describe()
