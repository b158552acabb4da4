"""What the image and video scoring commands (``IQA/iqa.py``, ``VQA/vqa.py``) share.

The trees supply the model, the data set of one file and how a batch is scored; this module finds the default
checkpoint, lists the media files (``--dir`` [``--recursive``], ``--list FILE``, or the files given), runs the
loader (bad files become rows with an ``error``; odd but usable files are scored and get a ``note`` saying what
was done), writes the ``name,score,calibrated,error,note`` CSV (plus ``clip_scores`` with ``--per-clip``) and
implements the command line (one file prints its score, several give a CSV; exit status 2 for usage /
checkpoint / option errors, 1 only if every file failed).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import (Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, TextIO,
                    Tuple, Union)

import torch
from torch.utils.data import DataLoader, Dataset

from . import distributed as D
from .calibration import Calibration, calibration_from_info
from .checkpoint import TRUST_FLAG_HELP, CheckpointError
from .loaders import ContiguousShardSampler
from .metrics import evaluate, format_metrics, has_labels
from .options import OptionError
from .robust import SkipBadItems, SkipCollate

CSV_COLUMNS = ("name", "score", "calibrated", "error", "note")
CLIP_COLUMN = "clip_scores"  # with --per-clip: the raw score of every clip, space-separated, in temporal order
CHECKPOINT_FOLDERS = ("runs", "pretrained_weights")  # searched recursively for the trainers' own checkpoints


class NoCheckpointError(CheckpointError):
    """No checkpoint given and none found in the usual places."""


# ----------------------------------------------------------------------------------------------- rows / CSV
@dataclass
class ScoreRow:
    """One CSV row: ``score`` / ``calibrated`` None for a file that could not be read (``error`` says why).

    ``note``: what was done to an odd but usable file (empty for a normal one); ``clip_scores``: raw per-clip
    scores (videos, on request).
    """

    name: str
    score: Optional[float] = None
    calibrated: Optional[float] = None
    error: str = ""
    note: str = ""
    clip_scores: Optional[List[float]] = None
    index: int = -1  # the file's position among the files being scored

    def csv_row(self, per_clip: bool = False) -> List[str]:
        fmt = lambda v: "" if v is None else repr(float(v))
        row = [self.name, fmt(self.score), fmt(self.calibrated), " ".join(self.error.split()),
               " ".join(self.note.split())]
        if per_clip:
            row.append(" ".join(fmt(c) for c in self.clip_scores or ()))
        return row


def write_score_csv(path: str, rows: Sequence[ScoreRow], per_clip: bool = False) -> None:
    """``name,score,calibrated,error,note`` (``per_clip``: and ``clip_scores``) to ``path`` (``-``: stdout)."""

    def write(f: TextIO) -> None:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS + ((CLIP_COLUMN,) if per_clip else ()))
        w.writerows(r.csv_row(per_clip) for r in rows)

    if path == "-":
        write(sys.stdout)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        write(f)


def list_media(folder: str, extensions: Sequence[str], kind: str, recursive: bool = False) -> List[Tuple[str, str]]:
    """``(name relative to folder, path)`` of the ``kind`` files (by extension) in ``folder``, sorted by name;
    ``recursive``: in its subfolders too (names then hold the subfolder, ``/``-separated)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--dir {folder!r} is not a folder")
    if recursive:
        names = [os.path.relpath(os.path.join(d, n), folder).replace(os.sep, "/")
                 for d, _, files in os.walk(folder) for n in files]
    else:
        names = [n for n in os.listdir(folder) if not os.path.isdir(os.path.join(folder, n))]
    out = [(n, os.path.join(folder, n)) for n in sorted(names) if os.path.splitext(n)[1].lower() in extensions]
    if not out:
        raise FileNotFoundError(f"--dir {folder!r} holds no {kind} files ({', '.join(extensions)})"
                                + ("" if recursive else "; --recursive also searches its subfolders"))
    return out


def read_file_list(list_file: str, kind: str) -> List[Tuple[str, str]]:
    """``(name as written, path)`` for each line of ``list_file``: one path per line, absolute or relative to the
    list's folder; blank lines and lines starting with ``#`` (comments) are skipped. Names are kept whole (a
    file name may hold ``#`` or spaces inside; leading and trailing spaces are dropped)."""
    try:
        with open(list_file, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"--list {list_file!r}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--list {list_file!r}: cannot read it as a text file ({e})") from None
    base = os.path.dirname(os.path.abspath(list_file))
    out = []
    for line in lines:
        name = line.strip()
        if name and not name.startswith("#"):
            out.append((name, os.path.join(base, os.path.expanduser(name))))
    if not out:
        raise ValueError(f"--list {list_file!r} names no {kind} files (one path per line; lines starting with # are "
                         "comments)")
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
    refuse_folder(ckpt)
    path = os.path.abspath(os.path.expanduser(ckpt))
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {ckpt}")
    return path


def refuse_folder(ckpt: str) -> None:
    """``--ckpt`` naming a folder is one line saying so (not "file not found")."""
    if os.path.isdir(os.path.expanduser(ckpt)):
        raise CheckpointError(f"--ckpt {ckpt} is a folder, not a checkpoint file: name the .pth file inside it")


def checkpoint_identity(path: str) -> Dict[str, Any]:
    """What identifies a checkpoint file for ``--resume``: its absolute path, size and modification time."""
    st = os.stat(path)
    return {"checkpoint": os.path.abspath(path), "checkpoint_size": st.st_size, "checkpoint_mtime": st.st_mtime}


def embedded_options(obj: Any) -> Optional[Dict[str, Any]]:
    """The options a checkpoint written by this project carries (``obj["sama"]["options"]``); None otherwise."""
    meta = obj.get("sama") if isinstance(obj, Mapping) else None
    opts = meta.get("options") if isinstance(meta, Mapping) else None
    return dict(opts) if isinstance(opts, Mapping) else None


def calibration_for(info: Mapping[str, Any], trainer: str, items: str) -> Tuple[Optional[Calibration], str]:
    """The checkpoint's calibration (None without score statistics) and the note to print about it."""
    cal, note = calibration_from_info(info, trainer=trainer)
    return cal, (cal.describe(items) if cal is not None else note)


# ----------------------------------------------------------------------------------------------- scoring
#: what a tree's ``score_batch`` gives per file: the raw score, or ``(score, per-clip scores)``
Scored = Union[float, Tuple[float, List[float]]]


class _Indexed(Dataset):
    """The items ``order[i]`` of ``dataset``, each carrying its index in ``dataset`` as ``"index"``."""

    def __init__(self, dataset: Dataset, order: Sequence[int]) -> None:
        self.dataset, self.order = dataset, list(order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return dict(self.dataset[self.order[i]], index=self.order[i])


class _NameOf:
    """``position -> name`` for :class:`SkipBadItems` (a class, not a lambda: DataLoader workers pickle it)."""

    def __init__(self, names: Callable[[int], str], order: Sequence[int]) -> None:
        self.names, self.order = names, list(order)

    def __call__(self, i: int) -> str:
        return self.names(self.order[i])


def score_items(
    dataset: Dataset,
    read_errors: Tuple[type, ...],
    score_batch: Callable[[Mapping[str, Any]], Sequence[Scored]],
    names: Callable[[int], str],
    indices: Optional[Sequence[int]] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    calibration: Optional[Calibration] = None,
    progress: bool = False,
    desc: str = "scoring",
) -> Iterator[ScoreRow]:
    """Score the items ``indices`` of ``dataset`` (default: all), yielding one :class:`ScoreRow` per item in that
    order as soon as its batch is scored -- the one scoring path of both trees' scorers and test commands.

    An item whose loading raises one of ``read_errors`` gives a row with ``error`` (its reason) and no score.
    Rows carry ``index`` (the item's index in ``dataset``) and ``name`` (``names(index)``); an item may carry a
    ``"note"`` (what was done to an odd file). ``score_batch(collated good items)`` gives the raw scores (or
    ``(score, clip scores)`` pairs) in batch order; it runs under :func:`torch.inference_mode`. DataLoader
    workers (``num_workers``) read the next items while the model scores the current ones. ``progress``: a bar
    counting the items (files/s).
    """
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]  # type: ignore[arg-type]
    position = {index: k for k, index in enumerate(order)}
    wrapped = SkipBadItems(_Indexed(dataset, order), errors=read_errors, name_fn=_NameOf(names, order))
    loader = DataLoader(wrapped, batch_size=max(1, int(batch_size)), shuffle=False,
                        num_workers=max(0, int(num_workers)), collate_fn=SkipCollate())
    with file_bar(len(order), desc, progress) as bar:
        for batch, bad in loader:
            rows = [ScoreRow(names(order[b.index]), error=b.reason, index=order[b.index]) for b in bad]
            if batch is not None:
                rows += _scored_rows(batch, score_batch, names, calibration)
            rows.sort(key=lambda r: position[r.index])
            bar.update(len(rows))
            yield from rows


def _scored_rows(batch: Mapping[str, Any], score_batch: Callable[[Mapping[str, Any]], Sequence[Scored]],
                 names: Callable[[int], str], calibration: Optional[Calibration]) -> List[ScoreRow]:
    """The rows of a collated batch of good items (``batch["index"]``: ``[B]``)."""
    with torch.inference_mode():
        results = list(score_batch(batch))
    indices = batch["index"].tolist()
    notes = batch.get("note") or [""] * len(indices)
    rows = []
    for index, scored, note in zip(indices, results, notes):
        score, clips = scored if isinstance(scored, tuple) else (scored, None)
        rows.append(ScoreRow(names(index), float(score), calibration(float(score)) if calibration else None,
                             note=str(note), clip_scores=None if clips is None else [float(c) for c in clips],
                             index=index))
    return rows


def score_shards(
    dataset: Dataset,
    read_errors: Tuple[type, ...],
    score_batch: Callable[[Mapping[str, Any]], Sequence[Scored]],
    names: Callable[[int], str],
    on_row: Callable[[ScoreRow], None],
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "scoring",
) -> List[ScoreRow]:
    """Every item of ``dataset`` as rows in dataset order (the test commands; :func:`score_items`), also under
    ``torchrun``: each rank scores its contiguous block, the rows are gathered. ``on_row(row)`` runs on rank 0
    for every row in dataset order -- its own as they are scored, then the other ranks' once gathered."""
    mine: List[ScoreRow] = []
    block = list(ContiguousShardSampler(len(dataset), D.rank(), D.world_size()))  # type: ignore[arg-type]
    for row in score_items(dataset, read_errors, score_batch, names, block, batch_size, num_workers, None, progress,
                           desc):
        mine.append(row)
        if D.is_main():
            on_row(row)
    everyone = D.all_gather_list(mine)
    if D.is_main():
        for row in everyone[len(mine):]:
            on_row(row)
    return everyone


class RowWriter:
    """A CSV written row by row (``-``: stdout): the header first (unless appending to a non-empty file), each
    row flushed as it is written, so a stopped command leaves every finished row. ``enabled=False``: writes
    nothing (ranks other than 0)."""

    def __init__(self, path: str, columns: Sequence[str], append: bool = False, enabled: bool = True) -> None:
        self.path, self.file = path, None
        if not enabled:
            return
        if path == "-":
            self.file = sys.stdout
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.file = open(path, "a" if append else "w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.file)
        if path == "-" or self.file.tell() == 0:  # (appending: the file's end)
            self.write(columns)

    def write(self, row: Sequence[Any]) -> None:
        if self.file is not None:
            self.csv.writerow(row)
            self.file.flush()

    def close(self) -> None:
        if self.file is not None and self.file is not sys.stdout:
            self.file.close()
        self.file = None

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def test_metrics(key: str, pairs: Sequence[Tuple[Optional[float], float]], kind: str) -> Tuple[str, Optional[Dict[str, float]]]:
    """``(line to print, metrics or None)`` of one test set's ``(prediction or None, label)`` pairs: metrics over
    the scored items when they are labelled (2 or more)."""
    scored = [(p, g) for p, g in pairs if p is not None]
    left_out = len(pairs) - len(scored)
    count = f"{len(scored)} {kind}" + (f" ({left_out} unreadable: error rows, left out)" if left_out else "")
    labels = [g for _, g in scored]
    if len(scored) >= 2 and has_labels(labels):
        metrics = evaluate([p for p, _ in scored], labels)
        return f"[{key}] {count}: {format_metrics(metrics)}  (n {metrics['n']})", metrics
    return f"[{key}] {count} scored (no labels, no metrics)", None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def file_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar counting files (``n/total``, files/s) on rank 0 when ``enabled`` and there are several files;
    a context manager with ``update(n)`` either way."""
    if not enabled or total < 2 or not D.is_main():
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a nicety, never a requirement
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="file", leave=False, dynamic_ncols=True)


@dataclass
class Scorer(ABC):
    """A loaded model with its test sampling: the base of the trees' scorers (``samavqa.VideoScorer``,
    ``samaiqa.ImageScorer``), which supply :meth:`dataset`, :meth:`score_batch` and :meth:`score_tensor`.

    ``scorer(x)`` (the Python API, as pyiqa's metrics): ``x`` a path -> one score; a list / tuple of paths -> a
    list of scores (in order); anything else goes to :meth:`score_tensor`. ``calibrated=True`` returns the
    calibrated scores (:class:`ValueError` if the checkpoint has no score statistics). A file that cannot be read
    raises :attr:`read_error` with the file and the reason; what was done to an odd input (a ``note``) is issued
    as a :class:`UserWarning`. :meth:`rows` / :meth:`score_paths` give CSV rows (bad files as rows with an error).
    """

    model: torch.nn.Module
    stype: str
    device: str
    checkpoint: str
    checkpoint_format: str
    calibration: Optional[Calibration]
    calibration_note: str
    bf16: bool = False
    notes: List[str] = field(default_factory=list)
    #: what the scores were made with (checkpoint, options, sampling, ...): compared by ``--resume``
    provenance: Dict[str, Any] = field(default_factory=dict)
    read_error: ClassVar[type] = RuntimeError
    batch_kwargs: ClassVar[Tuple[str, ...]] = ()  # score_batch keyword arguments the command line may pass

    @abstractmethod
    def dataset(self, paths: Sequence[str], progress: bool = False) -> Dataset:
        """Test-mode items of ``paths`` (``progress``: a bar over the work inside one long file)."""

    @abstractmethod
    def score_batch(self, batch: Mapping[str, Any], **kwargs: Any) -> List[Scored]:
        """Raw scores of a collated batch of items, in batch order."""

    @abstractmethod
    def score_tensor(self, x: Any, **kwargs: Any) -> Tuple[List[Tuple[float, str, str]], bool]:
        """``([(raw score, note, name)], batched)`` of decoded media given as a tensor / array."""

    def rows(self, paths: Sequence[str], batch_size: int = 1, num_workers: int = 0, progress: bool = True,
             **batch_kwargs: Any) -> Iterator[ScoreRow]:
        """Score files, yielding each row (in the order of ``paths``) as soon as it is known; a bad file gives a
        row with ``error`` set. ``progress``: a bar over the files (one file: the tree's own bar inside it)."""
        paths = [os.fspath(p) for p in paths]
        self.model.eval()
        score = (lambda b: self.score_batch(b, **batch_kwargs)) if batch_kwargs else self.score_batch
        return score_items(self.dataset(paths, progress and len(paths) == 1), (self.read_error,), score,
                           paths.__getitem__, None, batch_size, num_workers, self.calibration, progress)

    def score_paths(self, paths: Sequence[str], batch_size: int = 1, num_workers: int = 0, progress: bool = True,
                    **batch_kwargs: Any) -> List[ScoreRow]:
        """:meth:`rows` as a list."""
        return list(self.rows(paths, batch_size, num_workers, progress, **batch_kwargs))

    def __call__(self, x: Any, calibrated: bool = False, **tensor_kwargs: Any) -> Union[float, List[float]]:
        one_path = isinstance(x, (str, os.PathLike))
        if one_path or isinstance(x, (list, tuple)):
            scored, batched = [], not one_path
            for r in self.rows([x] if one_path else list(x), progress=False):
                if r.score is None:
                    raise self.read_error(r.error)
                scored.append((r.score, r.note, r.name))
        else:
            scored, batched = self.score_tensor(x, **tensor_kwargs)
        for _, note, name in scored:
            if note:
                warnings.warn(f"{name}: {note}", UserWarning, stacklevel=2)
        cal = self.calibration
        if calibrated and cal is None:
            raise ValueError(f"no calibrated score: {self.calibration_note}")
        values = [cal(s) if calibrated and cal is not None else float(s) for s, _, _ in scored]
        return values if batched else values[0]


# ----------------------------------------------------------------------------------------------- command line
def scoring_parser(kind: str, flag: str, description: str, released: str, options_help: str,
                   stype: Dict[str, Any], batch_size: int, batch_help: Optional[str] = None) -> argparse.ArgumentParser:
    """The scoring command line; ``flag`` (``-i`` / ``-v``) names the files, which end up in ``args.files``."""
    p = argparse.ArgumentParser(description=description)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(flag, f"--{kind}", dest="files", action="extend", nargs="+", metavar=kind.upper(),
                     help=f"{kind} file(s); repeatable")
    src.add_argument("--dir", help=f"score every {kind} file in this folder (by extension; see --recursive)")
    src.add_argument("--list", metavar="FILE", help=f"score the {kind} files named in FILE: one path per line, "
                                                    "absolute or relative to FILE's folder; # starts a comment line")
    p.add_argument("--recursive", action="store_true", help="with --dir: also score the files in its subfolders")
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
    p.add_argument("--verbose", action="store_true", help="let the media libraries print their own log lines")
    return p


def media_items(args: argparse.Namespace, extensions: Sequence[str], kind: str) -> List[Tuple[str, str]]:
    """``(name for the CSV, path)`` of the files a command line names: ``--dir`` [``--recursive``], ``--list`` or
    the files themselves."""
    if args.recursive and not args.dir:
        raise ValueError("--recursive applies to --dir only")
    if args.dir:
        return list_media(args.dir, extensions, kind, recursive=args.recursive)
    if args.list:
        return read_file_list(args.list, kind)
    return [(p, p) for p in args.files]


def _score_line(r: ScoreRow) -> str:
    line = f"{r.name}: score {r.score:.6f}"
    if r.calibrated is not None:
        line += f", calibrated {r.calibrated:.4f}"
    if r.clip_scores is not None:
        line += "; clip scores " + " ".join(f"{c:.6f}" for c in r.clip_scores)
    return line


def run_scoring(args: argparse.Namespace, load_scorer: Callable[..., ScorerLike], extensions: Sequence[str],
                kind: str, scorer_args: Optional[Mapping[str, Any]] = None,
                check_given: Optional[Callable[[str], None]] = None) -> int:
    """The body of a scoring command: list the files, load the scorer, score, print or write the CSV.

    ``scorer_args``: the tree's own keyword arguments of ``load_scorer``. ``check_given(path)`` may refuse a
    file named on the command line (e.g. an image given to the video command) with a ``ValueError`` /
    ``RuntimeError`` before any work starts. Odd files are scored and their notes printed as warnings.
    Returns the exit status: 2 for usage / checkpoint / option errors, 1 if every file failed, else 0.
    """
    try:
        items = media_items(args, extensions, kind)
        if check_given is not None and args.files:
            for path in args.files:
                check_given(path)
        scorer = load_scorer(args.ckpt, args.options, args.stype, args.device, args.bf16,
                             trust_checkpoint=args.trust_checkpoint, **dict(scorer_args or {}))
    except (OptionError, CheckpointError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in scorer.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"note: {scorer.calibration_note}", file=sys.stderr)
    single = len(items) == 1 and not args.output
    per_clip = bool(getattr(args, "per_clip", False))
    rows = scorer.score_paths([p for _, p in items], args.batch_size, args.num_workers,
                              progress=not args.no_progress, **({"per_clip": True} if per_clip else {}))
    for row, (name, _) in zip(rows, items):
        row.name = name
    failed = [r for r in rows if r.score is None]
    for r in rows:
        if r.note:
            print(f"warning: {r.name}: {r.note}", file=sys.stderr)
    if single:
        r = rows[0]
        if r.score is None:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            print(_score_line(r))
    else:
        write_score_csv(args.output or "-", rows, per_clip)
        print(f"note: {len(rows) - len(failed)} of {len(rows)} {kind}s scored"
              + (f"; CSV written to {args.output}" if args.output and args.output != "-" else ""), file=sys.stderr)
        for r in failed:
            print(f"warning: {r.name}: {r.error}", file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0
