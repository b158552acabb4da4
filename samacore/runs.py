"""Run plumbing shared by the trees' train / finetune / test commands (``samaiqa.cli``, ``samavqa.cli``).

The common command line (``-o``, ``--resume``, ``--stop-after-epochs``, ``--overwrite``, ``--bf16``,
``--trust-checkpoint``, ``--device``, ``--no-progress``, ``--output``), :func:`run_command` (problems a user can fix
end in one line and exit status 2; Ctrl-C in one line saying what was saved, exit status 130), the checks of the run
options both schemas share, the option file of a command (:func:`options_file`: ``--resume`` alone takes the run's
own), the run folder (checked writable before any work, never started over by accident: :func:`start_run`; options
used, predictions CSV; training: ``runs/{name}``, testing: ``runs/{name}/test``) and the bad-item log. This module
sits on top: it imports the loop's settings (:class:`samacore.context.RunContext`, re-exported here), never the
other way round.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import yaml

from . import distributed as D
from . import resample, run_options
from .checkpoint import CheckpointError, load_on_main
from .context import RunContext, interrupted_message
from .engine import TrainingDiverged
from .labels import LabelError
from .options import OptionError
from .precision import DETERMINISTIC_CUBLAS, amp_mode, set_deterministic
from .resume import RESUME_FILE, load_resume, run_options_text
from .robust import BadItemLog, TooManyBadItems
from .runlog import RunLogger
from .scoring import WriteFailed
from .startup import INTERRUPTED_STATUS
from .utils import out_of_memory, out_of_memory_said

#: what a user can fix (an option, a label file, a checkpoint, a missing file, too many unreadable items, a loss
#: that stays NaN, a predictions CSV that cannot be written: a full disk): the commands end with its message in
#: one line instead of a traceback
USER_ERRORS = (OptionError, LabelError, CheckpointError, FileNotFoundError, TooManyBadItems, TrainingDiverged,
               WriteFailed)




def run_command(fn: Callable[[], Any]) -> None:
    """Run a command; the :data:`USER_ERRORS` and running out of memory end with ``error: <message>`` on stderr
    and exit status 2, Ctrl-C with one line saying what was saved and how to continue
    (:func:`samacore.context.interrupted_message`) and exit status 130; any other exception keeps its traceback."""
    RunContext.current = None
    try:
        resample.backend()  # a bad SAMA_RESAMPLE_BACKEND is said before any work, not inside a loader worker
        fn()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # any other is a fault of the program: its traceback stays
        if not out_of_memory(e):
            raise
        remedy = ("use a smaller batch (the option train_batch_size (VQA) / batch_size (IQA) or test_batch_size: "
                  "--set KEY=N), bf16 (--bf16) or another --device")
        print(f"error: {out_of_memory_said(e, remedy)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted_message(resume_command()), file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


def resume_command() -> str:
    """How this command was started, for a ``--resume`` hint: ``python VQA/demo_train.py`` or ``sama-train-vqa``."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "the command"
    return f"python {program}" if program.endswith(".py") else os.path.basename(program)


# ----------------------------------------------------------------------------------------------- options
def command_parser(description: str, default_opt: str, opt_help: str, test: bool,
                   output_help: str = "") -> argparse.ArgumentParser:
    """The command line of a train / finetune (``test=False``) or test command: ``-o``, the command's own flags,
    and the flags of :data:`samacore.run_options.RUN_OPTIONS` (with ``--set KEY.PATH=VALUE``)."""
    p = argparse.ArgumentParser(description=description)
    p.set_defaults(default_opt=default_opt)
    p.add_argument("-o", "--opt", default=None,
                   help=f"{opt_help}; default {default_opt}" + ("" if test else ", or with --resume the run's own"))
    if test:
        p.add_argument("--output", default=None, help=output_help)
    else:
        p.add_argument("--resume", default=None, metavar="RUN_OR_CHECKPOINT",
                       help="continue an interrupted run with the options and weights it holds (no -o needed): its "
                            "folder (runs/NAME, holding last.pth) or a last.pth file")
        p.add_argument("--overwrite", action="store_true",
                       help="start afresh in a run folder that holds a finished or resumable run (its files are "
                            "replaced)")
    run_options.add_run_flags(p, "test" if test else "train")
    return p


def option_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Options the command line replaces before the option file is checked: the table's flags (``--ckpt``:
    ``load_path``, ``--bf16``: ``amp``, ...), and with ``--resume`` alone (no ``-o``) the run folder: the one
    resumed (its stored ``runs/{name}`` is relative to the working directory, so a run resumed from elsewhere, or
    from a copy, would continue in another folder, over whatever run is there). With ``-o`` the file's run folder
    is kept: continuing a run into another folder is what it may ask for."""
    overrides = run_options.flag_overrides(args)
    if getattr(args, "resume", None) and getattr(args, "opt", None) is None:
        target = os.path.abspath(os.path.expanduser(args.resume))
        # a last.pth given, or a folder (also on a node that does not hold it: rank 0 reads the state)
        is_file = os.path.isfile(target) or (not os.path.isdir(target) and target.endswith(".pth"))
        overrides["run_dir"] = os.path.dirname(target) if is_file else target
    return overrides


def load_path_source(args: argparse.Namespace, opt: Mapping[str, Any]) -> str:
    """What gave ``load_path``, for messages about its file: ``--ckpt`` or the option file."""
    if run_options.flag_overrides(args).get("load_path"):
        return "--ckpt"
    return f"load_path of the option file {opt['_options_path']}"


def apply_command_line(opt: Dict[str, Any], args: argparse.Namespace, log: logging.Logger) -> str:
    """Normalise ``amp``, switch on determinism (before any CUDA work) and torchrun, keep the log on rank 0;
    returns the device. (The flags themselves reached ``opt`` through :func:`option_overrides`.)"""
    opt["amp"] = amp_mode(opt.get("amp"))
    set_deterministic(bool(opt.get("deterministic", False)))
    device, backend = D.plan_this_process(opt.get("device"))
    D.init_distributed(device, backend)
    if not D.is_main():  # one copy of the log
        log.setLevel("WARNING")
    return device


def log_world(log: logging.Logger, per_process_batch: int) -> None:
    """Under torchrun: say how many processes there are and what the global training batch is."""
    if D.is_dist():
        log.info("torchrun: %d processes; batch sizes are per process (global train batch %d)", D.world_size(),
                 D.world_size() * per_process_batch)


def show_progress(opt: Mapping[str, Any]) -> bool:
    """Whether to draw progress bars: option ``progress`` (``--no-progress`` sets it through the option table)."""
    return bool(opt.get("progress", True))


# ----------------------------------------------------------------------------------------------- run folder
def run_dir(opt: Mapping[str, Any]) -> str:
    """``runs/{name}`` (option ``run_dir``), absolute, relative to the working directory."""
    return os.path.abspath(str(opt.get("run_dir", os.path.join("runs", str(opt["name"])))))


def test_run_dir(opt: Mapping[str, Any]) -> str:
    """``runs/{name}/test`` (``{run_dir}/test`` with option ``run_dir``): the run folder of the test commands
    (``demo_test.py``, ``demo_test_iqa.py``), inside the training run's folder of the same name but apart from its
    files, so testing never overwrites the training run's ``options.yml`` / ``summary.json``."""
    return os.path.join(run_dir(opt), "test")


#: what shows that a run folder holds a run: its resumable state or summary (results.json: IQA runs of earlier versions)
RUN_MARKERS = (RESUME_FILE, "summary.json", "results.json")
#: the files a run writes at its top level (removed by ``--overwrite``)
RUN_FILES = RUN_MARKERS + ("metrics.csv", "metrics.jsonl", "skipped.txt", "splits.json", "curves.png")


def options_file(args: argparse.Namespace, command: Optional[str] = None, tree: Optional[str] = None) -> str:
    """The option file of a command: ``-o``; without it, with ``--resume``, the resumed run's own options (from
    its state, which must be of this ``command`` and ``tree``; a file written for them when the run folder is not
    on this node); else the command's default."""
    if args.opt is not None:
        return args.opt
    if not getattr(args, "resume", None):
        return args.default_opt
    # rank 0 reads the state; the process group follows the --device given (the run's own device option is not
    # known before its options are read)
    device, backend = D.plan_this_process(run_options.flag_overrides(args).get("device"))
    if device.startswith("cuda"):
        # CUDA starts here, before the run's options can say `deterministic: true`, which needs this set before
        # cuBLAS starts (set_deterministic refuses otherwise): set as such a run needs (a workspace of a few MB per
        # stream, whatever the run); a value the user set stays
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS[0])
    D.init_distributed(device, backend)
    text = run_options_text(args.resume, command, tree)
    target = os.path.abspath(os.path.expanduser(args.resume))
    beside = os.path.join(target if os.path.isdir(target) else os.path.dirname(target), "options.yml")
    if os.path.isfile(beside):
        with open(beside, encoding="utf-8") as f:
            if yaml.safe_load(f) == yaml.safe_load(text):
                return beside
    folder = tempfile.mkdtemp(prefix="sama-resume-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "options.yml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def check_writable(folder: str, what: str) -> None:
    """Make sure files can be written in ``folder`` (or, while it does not exist, in the folder it would be made
    in), before any work; nothing is created. Checked on rank 0, the one that writes (every rank fails alike)."""
    load_on_main(lambda: _check_writable(folder, what))


def check_test_output(path: Optional[str]) -> None:
    """A test command's ``--output`` must not exist yet (as the scorers' ``--output``): a finished predictions CSV
    is never overwritten. Its own default (``runs/{name}/test/predictions.csv``) is the test run's to rewrite.
    Checked on rank 0, the one that writes."""
    def check() -> None:
        if path and os.path.isfile(path):  # (a device such as /dev/null or /dev/stdout is written to)
            raise OptionError(f"--output {path} exists: a test command does not overwrite it; remove it or give "
                              f"another file")

    load_on_main(check)


def _check_writable(folder: str, what: str) -> None:
    existing = os.path.abspath(folder)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(20, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OptionError(f"{what} {folder} cannot be written to ({e.strerror or e}): make it writable or choose "
                          f"another folder (option {'run_dir' if 'run' in what else 'save_dir'})") from None


def _existing_run(folder: str) -> List[str]:
    return [f for f in RUN_MARKERS if os.path.isfile(os.path.join(folder, f))]


def start_run(opt: Mapping[str, Any], args: argparse.Namespace, folder: str, command: str,
              tree: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Before a training run touches anything: its run folder (and checkpoint folder ``save_dir``) can be written;
    with ``--resume`` the state is read and must continue these options (returned); without it a run folder that
    holds a run is refused unless ``--overwrite`` (which removes that run's files)."""
    check_writable(folder, "run folder")
    if opt.get("save_dir"):
        check_writable(os.path.abspath(str(opt["save_dir"])), "checkpoint folder (save_dir)")
    if getattr(args, "resume", None):
        if getattr(args, "overwrite", False):  # it was ignored without a word: which did the user mean?
            raise OptionError(f"--resume and --overwrite contradict each other: --resume {args.resume} continues "
                              f"that run, --overwrite starts afresh over it; give one of them")
        return load_resume(args.resume, opt, command, tree)
    found = load_on_main(lambda: _existing_run(folder))
    if found and not getattr(args, "overwrite", False):
        raise OptionError(f"run folder {folder} already holds a run ({', '.join(found)}): continue it with --resume "
                          f"{folder}, start afresh over it with --overwrite, or give the run another name / run_dir")
    if found and D.is_main():
        for name in RUN_FILES:
            if os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    return None


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
