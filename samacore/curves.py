"""Training curves: ``{run_dir}/curves.png``, drawn from the run's ``metrics.csv``: rewritten after an epoch when the
last drawing is :data:`REDRAW_AFTER_S` old or more, and at the end of every training stage.

Four panels over the epochs: train loss, train SRCC, validation SRCC and validation PLCC. The numbers are the
rows the run logger wrote (:class:`samacore.runlog.RunLogger`), whichever tree wrote them:

* a row with ``lr_head`` carries a training pass: ``loss`` and the train SRCC;
* a row with ``n`` carries an evaluation: ``srcc`` and ``plcc`` of the validation set;
* a row may carry both (the IQA trainer logs one row per epoch): its train SRCC is then ``train_srcc``, its
  ``srcc`` the validation one; a training-only row's train SRCC is ``srcc``.

One line per data set (``set`` column: each VQA validation set gets its own line and legend entry) and per split
(``split`` column: the IQA splits and the VQA finetuning splits are one line each, in one picture). A value the
logger could not write (NaN) is a gap. ``python -m samacore.curves RUN_DIR`` redraws a run's picture.

matplotlib is imported only when a picture is drawn, with the non-interactive Agg canvas (no display needed);
a failure to draw (matplotlib missing, a full disk) is reported once as a warning and never stops training.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .runlog import get_logger

__all__ = ["CURVES_FILE", "PANELS", "REDRAW_AFTER_S", "curve_series", "draw_curves", "read_metrics_csv", "update_curves"]

log = get_logger("samacore")

CURVES_FILE = "curves.png"
#: a drawing takes ~1 s of CPU: a run of 3-second epochs redraws after every 7th or so, not after each one
REDRAW_AFTER_S = 20.0
PANELS = ("train loss", "train SRCC", "validation SRCC", "validation PLCC")
#: panel -> line label -> (epochs, values)
Series = Dict[str, Dict[str, Tuple[List[int], List[float]]]]


def _number(text: str) -> Any:
    """A CSV field as the logger wrote it: int, float, text, or None for an empty field."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_metrics_csv(path: str) -> List[Dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (empty fields: None)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _value(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    return math.nan if v is None or v == "" else float(v)


def _line_label(row: Mapping[str, Any], default: str) -> str:
    """``{set} split {NN}``: the row's data set (``default`` without a ``set`` column), and its split if any."""
    label = default if row.get("set") in (None, "") else str(row["set"])
    return label if row.get("split") in (None, "") else f"{label} split {int(row['split']):02d}"


def curve_series(rows: Sequence[Mapping[str, Any]]) -> Series:
    """``{panel: {line label: (epochs, values)}}`` for :data:`PANELS` from the logger's rows (see the module
    docstring for which column feeds which panel). Lines keep the rows' order."""
    out: Series = {p: {} for p in PANELS}

    def add(panel: str, label: str, epoch: int, value: float) -> None:
        epochs, values = out[panel].setdefault(label, ([], []))
        epochs.append(epoch)
        values.append(value)

    for row in rows:
        if row.get("epoch") in (None, ""):
            continue
        epoch = int(row["epoch"])
        has_train = row.get("lr_head") not in (None, "")
        has_eval = row.get("n") not in (None, "")
        if has_train:
            label = _line_label(row, "train")
            add("train loss", label, epoch, _value(row, "loss"))
            add("train SRCC", label, epoch, _value(row, "train_srcc" if has_eval else "srcc"))
        if has_eval:
            label = _line_label(row, "validation")
            add("validation SRCC", label, epoch, _value(row, "srcc"))
            add("validation PLCC", label, epoch, _value(row, "plcc"))
    return out


def draw_curves(series: Series, path: str, title: str = "") -> str:
    """Draw :func:`curve_series` output as a 2x2 PNG at ``path`` (written atomically); returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: only runs that draw need matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, panel in zip(axes, PANELS):
        for label, (epochs, values) in series.get(panel, {}).items():
            ax.plot(epochs, values, marker="o", markersize=4, label=label)
        ax.set_title(panel)
        ax.set_ylabel(panel.split()[-1])
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel != "train loss":  # correlations on one fixed scale, so panels and runs compare at a glance
            ax.axhline(0.0, color="grey", linewidth=0.8)
            ax.set_ylim(-1.05, 1.05)
        if series.get(panel):
            ax.legend(fontsize="small")
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


_warned = False
_drawn_at: Dict[str, float] = {}  # run folder -> time.monotonic() of its last drawing in this process


def update_curves(run_dir: str, min_interval_s: float = 0.0) -> Optional[str]:
    """Redraw ``{run_dir}/curves.png`` from ``{run_dir}/metrics.csv``; returns its path, or None when there is
    nothing to draw, the last drawing of this folder is younger than ``min_interval_s`` seconds, or drawing failed
    (warned once per process: a picture never stops a run)."""
    global _warned
    metrics = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(metrics):
        return None
    key = os.path.abspath(run_dir)
    if time.monotonic() - _drawn_at.get(key, -math.inf) < min_interval_s:
        return None
    _drawn_at[key] = time.monotonic()
    try:
        return draw_curves(curve_series(read_metrics_csv(metrics)), os.path.join(run_dir, CURVES_FILE),
                           title=os.path.basename(os.path.normpath(run_dir)))
    except Exception as e:  # matplotlib missing or broken, disk full, ...: the run goes on
        if not _warned:
            _warned = True
            hint = " (pip install matplotlib)" if isinstance(e, ImportError) else ""
            log.warning("could not draw %s: %s: %s%s; training goes on (warned once)",
                        os.path.join(run_dir, CURVES_FILE), type(e).__name__, e, hint)
        return None


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m samacore.curves RUN_DIR [RUN_DIR ...]``: redraw the runs' curves.png."""
    for run_dir in (sys.argv[1:] if argv is None else argv):
        path = update_curves(run_dir)
        print(path or f"{run_dir}: no metrics.csv, or nothing drawn")


if __name__ == "__main__":
    main()
