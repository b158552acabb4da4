"""The run summary: ``summary.json`` in the run folder, one file name and one set of keys for both trees.

Training (VQA ``train`` / ``finetune``, IQA ``train``)::

    {"command": "train" | "finetune", "tree": "vqa" | "iqa", "name": ..., "protocol": "...",
     "results": [                                   # one row per validation set and split
        {"set": "val-kv1k", "split": null | 0.., "best_per_metric": {srcc, plcc, krcc, rmse, n},
         "best_epoch_per_metric": {...}, "final": {...}, "final_epoch": 19, "selected": {...},
         "selected_epoch": 17, "checkpoint": "path" | null, "calibration": {...}?, "n_train": ..?, "n_test": ..?}],
     "aggregate": {"best_per_metric": {"median": {...}, "mean": {...}},   # over splits, when there are splits
                   "selected": {"median": {...}, "mean": {...}}},
     "label_stats": {...}?, "skipped": {"count", "list"}?, "stopped": "..."?}

``best_per_metric`` is the original's reporting (each metric at its own best epoch), ``final`` the last epoch,
``selected`` the epoch of the saved checkpoint (largest SRCC + PLCC). Testing (both trees, ``runs/{name}/test/``)::

    {"command": "test", "tree": ..., "name": ..., "checkpoint": "path", "predictions": "path.csv",
     "results": [{"set": "val-kv1k", "metrics": {srcc, plcc, krcc, rmse, n}, "n_failed": 0}], "skipped": ...?}
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from .metrics import aggregate

__all__ = ["SUMMARY_FILE", "best_rows", "test_summary", "training_summary"]

SUMMARY_FILE = "summary.json"
PROTOCOL = ("best_per_metric = each metric's own best epoch (the original's reporting); final = last epoch; "
            "selected = epoch with max SRCC+PLCC (the saved EMA checkpoint); aggregates are median and mean over "
            "splits")


def best_rows(best: Any, split: Optional[int] = None, **extra: Any) -> List[Dict[str, Any]]:
    """One result row per validation set of a :class:`samacore.trainer.BestCheckpointer` (``split``: the split it
    trained; ``extra``: more keys for every row, e.g. ``n_train``)."""
    return [{"set": key, "split": split, **row, **extra} for key, row in best.summary().items()]


def training_summary(command: str, tree: str, name: str, rows: Sequence[Mapping[str, Any]],
                     **extra: Any) -> Dict[str, Any]:
    """The ``summary.json`` of a training run (see the module docstring); ``extra``: label_stats, skipped, ..."""
    out: Dict[str, Any] = {"command": command, "tree": tree, "name": name, "protocol": PROTOCOL,
                           "results": [dict(r) for r in rows]}
    if any(r.get("split") is not None for r in rows):
        out["aggregate"] = {which: aggregate([r[which] for r in rows if r.get(which)])
                            for which in ("best_per_metric", "selected")}
    out.update({k: v for k, v in extra.items() if v})
    return out


def test_summary(tree: str, name: str, checkpoint: str, predictions: str,
                 results: Mapping[str, Mapping[str, Any]], **extra: Any) -> Dict[str, Any]:
    """The ``summary.json`` of a test run: ``results`` maps each scored set to ``{"metrics": ..., "n_failed": ...}``."""
    out: Dict[str, Any] = {"command": "test", "tree": tree, "name": name, "checkpoint": checkpoint,
                           "predictions": predictions,
                           "results": [{"set": key, **dict(r)} for key, r in results.items()]}
    out.update({k: v for k, v in extra.items() if v})
    return out
