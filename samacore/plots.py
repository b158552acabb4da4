"""Pictures of test results: ``runs/{name}/test/scatter.png`` (prediction against label per test set).

matplotlib is imported only when a picture is drawn, with the non-interactive Agg canvas (no display needed), as
:mod:`samacore.curves` does; a failure to draw (matplotlib missing, a full disk) is a warning and never costs
the predictions CSV, which is written before.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from . import distributed as D
from .metrics import evaluate, has_labels
from .runlog import get_logger

__all__ = ["SCATTER_FILE", "draw_scatter", "scatter_pairs"]

log = get_logger("samacore")

SCATTER_FILE = "scatter.png"
#: one test set's ``(prediction or None for an unreadable item, label)`` pairs
Pairs = Sequence[Tuple[Optional[float], float]]


def scatter_pairs(pairs: Pairs) -> Tuple[np.ndarray, np.ndarray]:
    """``(predictions [n], labels [n])`` of the items that were scored and are labelled."""
    kept = [(p, g) for p, g in pairs if p is not None and math.isfinite(p) and math.isfinite(g)]
    return np.array([p for p, _ in kept], float), np.array([g for _, g in kept], float)


def _draw(path: str, sets: Mapping[str, Pairs], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: only test runs that draw need matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * max(1, len(sets)), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for k, (key, pairs) in enumerate(sets.items()):
        ax = fig.add_subplot(1, max(1, len(sets)), k + 1)
        preds, labels = scatter_pairs(pairs)
        ax.scatter(preds, labels, s=12, alpha=0.7)
        head = f"{key}: n {len(preds)}"
        if len(preds) >= 2 and has_labels(labels) and np.ptp(preds) > 0:
            m = evaluate(preds.tolist(), labels.tolist())
            slope, offset = np.polyfit(preds, labels, 1)  # the fitted line: label ~ slope * pred + offset
            xs = np.linspace(preds.min(), preds.max(), 2)
            ax.plot(xs, slope * xs + offset, color="tab:red", lw=1.2, label="least-squares fit")
            ax.legend(loc="lower right", fontsize=8)
            head += f", SRCC {m['srcc']:.3f}, PLCC {m['plcc']:.3f}"
        ax.set_title(head, fontsize=9)
        ax.set_xlabel("prediction (raw score)")
        ax.set_ylabel("label")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)


def draw_scatter(path: str, sets: Mapping[str, Pairs], title: str) -> Optional[str]:
    """Draw prediction against label for each test set (one panel per set: SRCC / PLCC / n in its title, the
    least-squares line) to ``path`` on rank 0; returns the path, or None (with a warning) when drawing failed."""
    if not D.is_main():
        return None
    try:
        _draw(path, sets, title)
    except Exception as e:  # a picture is a nicety: any failure is a warning, the CSV is already written
        log.warning("could not draw %s (%s: %s); the predictions CSV is complete", path, type(e).__name__, e)
        return None
    return path
