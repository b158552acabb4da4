"""Run plumbing shared by the trees' train / finetune / test commands (``samaiqa.cli``, ``samavqa.cli``).

The common command line (``-o``, ``--resume``, ``--stop-after-epochs``, ``--bf16``, ``--trust-checkpoint``,
``--device``, ``--no-progress``, ``--output``), :func:`run_command` (problems a user can fix end in one line and exit
status 2), the checks of the run options both schemas share, the run folder (options used, predictions CSV;
training: ``runs/{name}``, testing: ``runs/{name}/test``), the bad-item log, and :class:`RunContext`: the loop
settings with the resume / stop-after-N-epochs logic.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import yaml

from . import distributed as D
from .checkpoint import TRUST_FLAG_HELP, CheckpointError
from .labels import LabelError
from .options import OptionError, check_types, typed
from .precision import amp_mode, set_deterministic
from .resume import RESUME_FILE, RunStopped, load_resume
from .robust import BadItemLog, TooManyBadItems
from .runlog import RunLogger

#: what a user can fix (an option, a label file, a checkpoint, a missing file, too many unreadable items): the
#: commands end with its message in one line instead of a traceback
USER_ERRORS = (OptionError, LabelError, CheckpointError, FileNotFoundError, TooManyBadItems)


def run_command(fn: Callable[[], Any]) -> None:
    """Run a command; the :data:`USER_ERRORS` end with ``error: <message>`` on stderr and exit status 2."""
    try:
        fn()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------------------------- options
def check_run_options(opt: Mapping[str, Any]) -> None:
    """Check the run keys both schemas share: types and bounds (:data:`samacore.options.COMMON_TYPES`), ``amp``,
    ``max_bad_fraction`` in [0, 1]; the error names the key and what is allowed."""
    check_types(opt)
    amp_mode(opt.get("amp"))
    for key, low in (("max_bad_steps", 1), ("stop_after_epochs", 0)):
        if opt.get(key) is not None and typed(opt, key, int, "options") < low:
            raise OptionError(f"options.{key} must be >= {low}, got {opt[key]}")
    if not isinstance(opt.get("deterministic", False), bool):
        raise OptionError(f"options.deterministic must be true or false, got {opt['deterministic']!r}")
    frac = opt.get("max_bad_fraction", 0.05)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
        raise OptionError(f"options.max_bad_fraction must be a number in [0, 1], got {frac!r}")


def command_parser(description: str, default_opt: str, opt_help: str, test: bool,
                   output_help: str = "") -> argparse.ArgumentParser:
    """The command line of a train / finetune (``test=False``) or test command."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-o", "--opt", default=default_opt, help=opt_help)
    if test:
        p.add_argument("--output", default=None, help=output_help)
        p.add_argument("--ckpt", default=None, metavar="FILE",
                       help="the checkpoint to test, in place of the options' load_path (so a training option file "
                            "tests the checkpoint its run wrote)")
    else:
        p.add_argument("--resume", default=None, metavar="RUN_OR_CHECKPOINT",
                       help="continue an interrupted run: its folder (runs/NAME, holding last.pth) or a last.pth file")
        p.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                       help="save the resumable state and stop after N epochs (option stop_after_epochs)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward passes (option amp: bf16)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_FLAG_HELP + " (option trust_checkpoint)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def option_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Options the command line replaces before the option file is checked (``--ckpt``: ``load_path``)."""
    return {"load_path": args.ckpt} if getattr(args, "ckpt", None) else {}


def apply_command_line(opt: Dict[str, Any], args: argparse.Namespace, log: logging.Logger) -> str:
    """Fold ``--bf16`` / ``--trust-checkpoint`` / ``--stop-after-epochs`` into ``opt`` (``amp`` normalised), switch on determinism (before
    any CUDA work) and torchrun, keep the log on rank 0; returns the device."""
    if args.bf16:
        opt["amp"] = "bf16"
    if args.trust_checkpoint:
        opt["trust_checkpoint"] = True
    if getattr(args, "stop_after_epochs", None) is not None:
        if args.stop_after_epochs < 0:
            raise OptionError(f"--stop-after-epochs must be >= 0, got {args.stop_after_epochs}")
        opt["stop_after_epochs"] = args.stop_after_epochs
    opt["amp"] = amp_mode(opt.get("amp"))
    set_deterministic(bool(opt.get("deterministic", False)))
    device, backend = D.plan_this_process(args.device or opt.get("device"))
    D.init_distributed(device, backend)
    if not D.is_main():  # one copy of the log
        log.setLevel("WARNING")
    return device


def log_world(log: logging.Logger, per_process_batch: int) -> None:
    """Under torchrun: say how many processes there are and what the global training batch is."""
    if D.is_dist():
        log.info("torchrun: %d processes; batch sizes are per process (global train batch %d)", D.world_size(),
                 D.world_size() * per_process_batch)


def show_progress(opt: Mapping[str, Any], args: argparse.Namespace) -> bool:
    return bool(opt.get("progress", True)) and not getattr(args, "no_progress", False)


# ----------------------------------------------------------------------------------------------- run folder
def run_dir(opt: Mapping[str, Any]) -> str:
    """``runs/{name}`` (option ``run_dir``), absolute, relative to the working directory."""
    return os.path.abspath(str(opt.get("run_dir", os.path.join("runs", str(opt["name"])))))


def test_run_dir(opt: Mapping[str, Any]) -> str:
    """``runs/{name}/test`` (``{run_dir}/test`` with option ``run_dir``): the run folder of the test commands
    (``demo_test.py``, ``demo_test_iqa.py``), inside the training run's folder of the same name but apart from its
    files, so testing never overwrites the training run's ``options.yml`` / ``summary.json``."""
    return os.path.join(run_dir(opt), "test")


def open_run(run_dir: str, opt: Mapping[str, Any], use_tensorboard: bool = True) -> RunLogger:
    """Create ``run_dir`` with ``options.yml`` (the options actually used) and return its :class:`RunLogger`.

    On ranks other than 0 the logger is disabled (writes nothing).
    """
    main = D.is_main()
    logger = RunLogger(run_dir, use_tensorboard=use_tensorboard and main, enabled=main)
    if main:
        plain = {k: v for k, v in opt.items() if not str(k).startswith("_")}
        with open(os.path.join(run_dir, "options.yml"), "w") as f:
            yaml.safe_dump(plain, f, sort_keys=False)
    return logger


def write_predictions_csv(
    path: str,
    names: Sequence[str],
    preds: Sequence[float],
    labels: Sequence[float],
    extra: Optional[Mapping[str, Sequence[Any]]] = None,
) -> str:
    """Write ``name,pred,gt`` rows (raw predictions, not rescaled) plus any ``extra`` columns; rank 0 only.

    A ``None`` prediction (an item that could not be scored) is written as an empty field.
    """
    columns = {"name": list(names), "pred": ["" if p is None else repr(float(p)) for p in preds],
               "gt": [repr(float(g)) for g in labels]}
    for key, values in (extra or {}).items():
        columns[key] = list(values)
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"write_predictions_csv: columns of different lengths {lengths}")
    if D.is_main():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(columns))
            w.writerows(zip(*columns.values()))
    return path


def bad_item_log(opt: Mapping[str, Any], run_dir: Optional[str], logger: Any = None) -> BadItemLog:
    """A :class:`samacore.robust.BadItemLog` for a run: option ``max_bad_fraction`` (default 0.05), skip list
    ``{run_dir}/skipped.txt`` (``name<TAB>reason<TAB>data sets`` per bad item; none without ``run_dir``)."""
    skip_file = os.path.join(run_dir, "skipped.txt") if run_dir else None
    return BadItemLog(float(opt.get("max_bad_fraction", 0.05)), skip_file, logger)


def label_stats(labels: np.ndarray) -> Dict[str, float]:
    """Mean, population std and count of the training labels (stored with every checkpoint)."""
    return {"mean": float(np.mean(labels)), "std": float(np.std(labels)), "n": int(labels.size)}


# ----------------------------------------------------------------------------------------------- loop settings
@dataclass
class RunContext:
    """Per-invocation settings of a training loop (options + command line)."""

    progress: bool = True
    amp: Optional[str] = None                   # "bf16": autocast for training and evaluation
    state_path: Optional[str] = None            # the resumable state written each epoch ({run_dir}/last.pth)
    resume: Optional[Dict[str, Any]] = None     # a loaded state the next loop continues from
    stop_after: int = 0                         # stop (state saved) after this many epochs in this process; 0: never
    epochs_done: int = 0
    max_bad_steps: int = 10

    @classmethod
    def for_run(cls, opt: Mapping[str, Any], progress: bool, run_dir: str, resume: Optional[str] = None,
                command: str = "train", **extra: Any) -> "RunContext":
        """The settings of a run in ``run_dir``; loads the ``--resume`` state (reporting options that differ)."""
        ctx = cls(progress=progress, amp=opt.get("amp"), state_path=os.path.join(run_dir, RESUME_FILE),
                  stop_after=int(opt.get("stop_after_epochs") or 0), max_bad_steps=int(opt.get("max_bad_steps", 10)),
                  **extra)
        if resume:
            ctx.resume = load_resume(resume, opt, command)
        return ctx

    def first_split(self, num_splits: int) -> int:
        """The split a resumed multi-split run continues at (0 when not resuming); the split counts must agree."""
        if self.resume is None:
            return 0
        if int(self.resume.get("num_splits", num_splits)) != num_splits:
            raise OptionError(f"--resume: the run has {self.resume['num_splits']} splits, these options {num_splits}")
        return int(self.resume.get("split", 0))

    def stops_after(self, epochs_done: int) -> bool:
        """Whether this process stops (``stop_after_epochs``) once it has done ``epochs_done`` epochs."""
        return bool(self.stop_after) and epochs_done >= self.stop_after

    def epoch_finished(self, epoch: int, num_epochs: int, more_after: bool = False, where: str = "") -> None:
        """Count an epoch; raise :class:`samacore.resume.RunStopped` once ``stop_after`` epochs are done and work
        remains (a later epoch, or ``more_after``: later splits). ``where`` is added to the message."""
        self.epochs_done += 1
        if self.stops_after(self.epochs_done) and (epoch < num_epochs - 1 or more_after):
            raise RunStopped(
                f"stopped after {self.epochs_done} epoch(s) as asked (stop_after_epochs){where}; continue with "
                f"--resume {os.path.dirname(self.state_path or '') or 'RUN_FOLDER'}")
