"""What the image and video scoring commands (``IQA/iqa.py``, ``VQA/vqa.py``) share.

The trees supply the model, the data set of one file and how a batch is scored; this module finds the default
checkpoint, lists a folder's media files, runs the loader (bad files become rows with an ``error``), writes the
``name,score,calibrated,error`` CSV and implements the command line (one file prints its score, several give a
CSV; exit status 2 for usage / checkpoint / option errors, 1 only if every file failed).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, TextIO, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from .calibration import Calibration, calibration_from_info
from .checkpoint import TRUST_FLAG_HELP, CheckpointError
from .engine import progress_bar
from .options import OptionError
from .robust import SkipBadItems, SkipCollate

CSV_COLUMNS = ("name", "score", "calibrated", "error")
CHECKPOINT_FOLDERS = ("runs", "pretrained_weights")  # searched recursively for the trainers' own checkpoints


class NoCheckpointError(CheckpointError):
    """No checkpoint given and none found in the usual places."""


# ----------------------------------------------------------------------------------------------- rows / CSV
@dataclass
class ScoreRow:
    """One CSV row: ``score`` / ``calibrated`` None for a file that could not be read (``error`` says why)."""

    name: str
    score: Optional[float] = None
    calibrated: Optional[float] = None
    error: str = ""

    def csv_row(self) -> List[str]:
        fmt = lambda v: "" if v is None else repr(float(v))
        return [self.name, fmt(self.score), fmt(self.calibrated), " ".join(self.error.split())]


def write_score_csv(path: str, rows: Sequence[ScoreRow]) -> None:
    """``name,score,calibrated,error`` to ``path`` (``-``: stdout)."""

    def write(f: TextIO) -> None:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(r.csv_row() for r in rows)

    if path == "-":
        write(sys.stdout)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        write(f)


def list_media(folder: str, extensions: Sequence[str], kind: str) -> List[Tuple[str, str]]:
    """``(name relative to folder, path)`` of the ``kind`` files (by extension) in ``folder``, sorted."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--dir {folder!r} is not a folder")
    out = [(n, os.path.join(folder, n)) for n in sorted(os.listdir(folder))
           if os.path.splitext(n)[1].lower() in extensions and not os.path.isdir(os.path.join(folder, n))]
    if not out:
        raise FileNotFoundError(f"--dir {folder!r} holds no {kind} files ({', '.join(extensions)})")
    return out


# ----------------------------------------------------------------------------------------------- checkpoint
def search_roots(repo_root: str) -> List[str]:
    """Folders searched for ``pretrained_weights/`` and ``runs/``: the working directory, then the repo root."""
    out: List[str] = []
    for r in (os.getcwd(), repo_root):
        if os.path.abspath(r) not in out:
            out.append(os.path.abspath(r))
    return out


@dataclass(frozen=True)
class CheckpointSearch:
    """Where a tree's scoring command looks for a checkpoint when ``--ckpt`` is not given (:meth:`find`)."""

    what: str                    # "IQA" / "VQA", for the message
    released: Tuple[str, ...]    # released weights, relative to a root, in order of preference
    released_why: str
    patterns: Tuple[str, ...]    # our trainer's file names (globs), in order of preference
    trainer: str                 # "samaiqa training"
    looked_for: str              # what the message says was looked for
    what_to_do: str              # how to get a checkpoint

    def find(self, roots: Sequence[str]) -> Tuple[str, str]:
        """``(path, why)``: the first released file found (root by root); else, for the first pattern that
        matches anything under ``runs/`` or ``pretrained_weights/`` of a root, the newest match; else
        :class:`NoCheckpointError` saying what was looked for where, and what to do."""
        for root in roots:
            for rel in self.released:
                path = os.path.join(root, rel)
                if os.path.isfile(path):
                    return path, self.released_why
        for pattern in self.patterns:
            found = {os.path.abspath(f) for root in roots for sub in CHECKPOINT_FOLDERS
                     for f in glob.glob(os.path.join(root, sub, "**", pattern), recursive=True)}
            if found:
                return max(found, key=lambda f: (os.path.getmtime(f), f)), f"newest checkpoint written by {self.trainer}"
        looked = ", ".join(os.path.abspath(r) for r in roots)
        raise NoCheckpointError(f"no {self.what} checkpoint given (--ckpt) and none found. Looked for {self.looked_for} "
                                f"under: {looked}. {self.what_to_do}")


def checkpoint_path(ckpt: Optional[str], find_default: Callable[[], Tuple[str, str]], notes: List[str]) -> str:
    """``--ckpt`` as an absolute path (the file must exist); without it ``find_default()``'s, noted in ``notes``."""
    if ckpt is None:
        path, why = find_default()
        notes.append(f"checkpoint: {path} ({why})")
        return path
    path = os.path.abspath(os.path.expanduser(ckpt))
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {ckpt}")
    return path


def calibration_for(info: Mapping[str, Any], trainer: str, items: str) -> Tuple[Optional[Calibration], str]:
    """The checkpoint's calibration (None without score statistics) and the note to print about it."""
    cal, note = calibration_from_info(info, trainer=trainer)
    return cal, (cal.describe(items) if cal is not None else note)


# ----------------------------------------------------------------------------------------------- scoring
def score_files(
    paths: Sequence[str],
    dataset: Dataset,
    read_errors: Tuple[type, ...],
    score_batch: Callable[[Mapping[str, Any]], List[float]],
    calibration: Optional[Calibration],
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
) -> List[ScoreRow]:
    """Score ``paths`` (item ``i`` of ``dataset`` is ``paths[i]`` and carries ``"index": i``).

    ``score_batch(collated good items) -> raw scores`` in batch order. A file whose item raises one of
    ``read_errors`` gets a row with ``error`` set. Rows are in the order of ``paths``.
    """
    rows = [ScoreRow(str(p)) for p in paths]
    wrapped = SkipBadItems(dataset, errors=read_errors, name_fn=lambda i: str(paths[i]))
    loader = DataLoader(wrapped, batch_size=max(1, int(batch_size)), shuffle=False,
                        num_workers=max(0, int(num_workers)), collate_fn=SkipCollate())
    with torch.inference_mode():
        for batch, bad in progress_bar(loader, "scoring", progress, total=len(loader)):
            for item in bad:
                rows[item.index].error = item.reason
            if batch is not None:
                for i, s in zip(batch["index"].tolist(), score_batch(batch)):
                    rows[i].score = float(s)
                    if calibration is not None:
                        rows[i].calibrated = calibration(float(s))
    return rows


class ScorerLike(Protocol):
    """What :func:`run_scoring` needs of a tree's scorer."""

    notes: List[str]
    calibration_note: str

    def score_paths(self, paths: Sequence[str], batch_size: int = ..., num_workers: int = ...,
                    progress: bool = ...) -> List[ScoreRow]: ...


# ----------------------------------------------------------------------------------------------- command line
def scoring_parser(kind: str, flag: str, description: str, released: str, options_help: str,
                   stype: Dict[str, Any], batch_size: int, batch_help: Optional[str] = None) -> argparse.ArgumentParser:
    """The scoring command line; ``flag`` (``-i`` / ``-v``) names the files, which end up in ``args.files``."""
    p = argparse.ArgumentParser(description=description)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(flag, f"--{kind}", dest="files", action="extend", nargs="+", metavar=kind.upper(),
                     help=f"{kind} file(s); repeatable")
    src.add_argument("--dir", help=f"score every {kind} file in this folder (not recursive)")
    p.add_argument("--ckpt", help=f"checkpoint (default: {released}, else the newest one our trainer wrote)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_FLAG_HELP)
    p.add_argument("--options", help=options_help)
    p.add_argument("--stype", **stype)
    p.add_argument("--output", help=f"CSV file ({','.join(CSV_COLUMNS)}); '-' for stdout. Default for several "
                                    f"{kind}s: stdout")
    p.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    p.add_argument("--num-workers", type=int, default=0, help="loader worker processes")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on GPUs; last digits may change)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_scoring(args: argparse.Namespace, load_scorer: Callable[..., ScorerLike], extensions: Sequence[str],
                kind: str) -> int:
    """The body of a scoring command: list the files, load the scorer, score, print or write the CSV.

    Returns the exit status: 2 for usage / checkpoint / option errors, 1 if every file failed, else 0.
    """
    try:
        items = list_media(args.dir, extensions, kind) if args.dir else [(p, p) for p in args.files]
        scorer = load_scorer(args.ckpt, args.options, args.stype, args.device, args.bf16,
                             trust_checkpoint=args.trust_checkpoint)
    except (OptionError, CheckpointError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in scorer.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"note: {scorer.calibration_note}", file=sys.stderr)
    single = len(items) == 1 and not args.output
    rows = scorer.score_paths([p for _, p in items], args.batch_size, args.num_workers,
                              progress=not args.no_progress and not single)
    for row, (name, _) in zip(rows, items):
        row.name = name
    failed = [r for r in rows if r.score is None]
    if single:
        r = rows[0]
        if r.score is None:
            print(f"error: {r.error}", file=sys.stderr)
        elif r.calibrated is None:
            print(f"{r.name}: score {r.score:.6f}")
        else:
            print(f"{r.name}: score {r.score:.6f}, calibrated {r.calibrated:.4f}")
    else:
        write_score_csv(args.output or "-", rows)
        print(f"note: {len(rows) - len(failed)} of {len(rows)} {kind}s scored"
              + (f"; CSV written to {args.output}" if args.output and args.output != "-" else ""), file=sys.stderr)
        for r in failed:
            print(f"warning: {r.name}: {r.error}", file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0
