"""Correlation metrics used throughout IQA/VQA, computed the way the original SAMA / FAST-VQA code does."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

METRIC_NAMES = ("srcc", "plcc", "krcc", "rmse")
# Correlations are better when higher, RMSE when lower.
HIGHER_IS_BETTER = {"srcc": True, "plcc": True, "krcc": True, "rmse": False}


def rescale(pred: Sequence[float], gt: Optional[Sequence[float]] = None) -> np.ndarray:
    """Standardise predictions; with ``gt``, map them onto the labels' mean and std (population std, as numpy).

    PLCC and RMSE are reported on rescaled predictions, so a model whose raw scores live on another scale
    is not penalised for an affine offset.
    """
    pred = np.asarray(pred, dtype=np.float64)
    out = (pred - pred.mean()) / pred.std()
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float64)
        out = out * gt.std() + gt.mean()
    return out


def compute_metrics(pred: Sequence[float], gt: Sequence[float]) -> Dict[str, float]:
    """SRCC, PLCC, KRCC and RMSE of ``pred`` against ``gt`` after :func:`rescale`; ``n`` is the number of items.

    Degenerate inputs (fewer than two items, or constant predictions) give NaN metrics instead of raising,
    so a tiny validation set never kills a run.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1)
    if pred.shape != gt.shape:
        raise ValueError(f"compute_metrics: {pred.size} predictions but {gt.size} labels")
    n = int(pred.size)
    if n < 2 or pred.std() == 0 or gt.std() == 0:
        return {"srcc": math.nan, "plcc": math.nan, "krcc": math.nan, "rmse": math.nan, "n": n}
    from scipy import stats  # imported here: the scorers import this module but need no scipy (a second)

    rescaled = rescale(pred, gt)
    return {
        "srcc": float(stats.spearmanr(gt, rescaled)[0]),
        "plcc": float(stats.pearsonr(gt, rescaled)[0]),
        "krcc": float(stats.kendalltau(gt, rescaled)[0]),
        "rmse": float(np.sqrt(((gt - rescaled) ** 2).mean())),
        "n": n,
    }


def has_labels(labels: Sequence[float]) -> bool:
    """True when every label is a real score (label-free sets use NaN)."""
    arr = np.asarray(labels, dtype=np.float64)
    return arr.size > 0 and bool(np.isfinite(arr).all())


def evaluate(preds: Sequence[float], labels: Sequence[float]) -> Dict[str, float]:
    """Metrics of raw predictions against labels (see :func:`samacore.metrics.compute_metrics`); NaN when unlabelled."""
    if not has_labels(labels):
        return {m: math.nan for m in METRIC_NAMES} | {"n": len(preds)}
    return compute_metrics(preds, labels)


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``SRCC 0.8123  PLCC 0.8011  KRCC 0.6200  RMSE 5.1234`` (NaN shown as nan)."""
    return "  ".join(f"{m.upper()} {float(metrics.get(m, math.nan)):.4f}" for m in METRIC_NAMES)


def is_better(metric: str, new: float, old: float) -> bool:
    if math.isnan(new):
        return False
    if math.isnan(old):
        return True
    return new > old if HIGHER_IS_BETTER[metric] else new < old


@dataclass
class BestTracker:
    """Best value of each metric and the epoch where it occurred, tracked *separately per metric*.

    This is the original protocol: the reported "best" SRCC and "best" PLCC may come from different epochs.
    ``selected`` additionally keeps the row chosen by checkpoint selection (largest SRCC + PLCC), which is
    the row that corresponds to a single saved model.
    """

    best: Dict[str, float] = field(default_factory=lambda: {m: math.nan for m in METRIC_NAMES})
    best_epoch: Dict[str, int] = field(default_factory=lambda: {m: -1 for m in METRIC_NAMES})
    selected: Dict[str, float] = field(default_factory=dict)
    selected_epoch: int = -1
    last: Dict[str, float] = field(default_factory=dict)
    last_epoch: int = -1

    def update(self, metrics: Dict[str, float], epoch: int) -> bool:
        """Record one evaluation; return True when it improves SRCC + PLCC (i.e. the checkpoint should be saved)."""
        for m in METRIC_NAMES:
            if is_better(m, metrics[m], self.best[m]):
                self.best[m], self.best_epoch[m] = float(metrics[m]), epoch
        self.last, self.last_epoch = dict(metrics), epoch
        score = metrics["srcc"] + metrics["plcc"]
        old = self.selected.get("srcc", math.nan) + self.selected.get("plcc", math.nan)
        if not math.isnan(score) and (math.isnan(old) or score > old):
            self.selected, self.selected_epoch = dict(metrics), epoch
            return True
        return False

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "best_epoch", "selected", "selected_epoch", "last", "last_epoch")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def summary_lines(self, name: str) -> List[str]:
        """Human-readable summary naming the protocol of each row."""
        fmt = lambda d: "  ".join(f"{m.upper()} {d.get(m, math.nan):.4f}" for m in METRIC_NAMES)
        best = "  ".join(f"{m.upper()} {self.best[m]:.4f} (ep {self.best_epoch[m]})" for m in METRIC_NAMES)
        return [
            f"[{name}] best per metric (each metric's own best epoch, as the original reports): {best}",
            f"[{name}] final epoch {self.last_epoch}: {fmt(self.last)}",
            f"[{name}] selected checkpoint (max SRCC+PLCC, epoch {self.selected_epoch}): {fmt(self.selected)}",
        ]


def aggregate(rows: Iterable[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Median and mean over splits of each metric (NaN-aware)."""
    rows = list(rows)
    out: Dict[str, Dict[str, float]] = {"median": {}, "mean": {}}
    for m in METRIC_NAMES:
        vals = np.array([r[m] for r in rows], dtype=np.float64)
        out["median"][m] = float(np.nanmedian(vals)) if vals.size else math.nan
        out["mean"][m] = float(np.nanmean(vals)) if vals.size else math.nan
    return out
