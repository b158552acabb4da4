"""What the image and video scoring commands (``IQA/iqa.py``, ``VQA/vqa.py``) and the test commands share.

The trees supply a :class:`Scorer` subclass (the model, the data set of the files, how a batch is scored); this
module holds the one scoring path, :func:`score_items` (a loader over the files; rows yielded in file order as
they are scored; bad files become rows with an ``error``, odd but usable ones get a ``note``), used by the
scorers and, through :func:`score_shards` (torchrun: one block per process), by the test commands. It also
finds the default checkpoint, lists the media files (``--dir`` [``--recursive``], ``--list FILE``, or the files
given) and implements the scoring command line: the ``--output`` CSV (:class:`OutputFile`: checked and locked
before any work, rows written as they come, ``--resume`` / ``--overwrite``, torchrun parts merged in file order),
clean stops on Ctrl-C / SIGTERM (exit status 130 / 143, finished rows kept), an output that cannot be written (a
full disk: :class:`WriteFailed`) said in one line with how to go on (finished rows kept), one file printed as a
line, and the closing line (files, failures, time, files/s). Exit status 2 for usage / checkpoint / option / output
errors, 1 only if every file failed.
"""
from __future__ import annotations

import argparse
import copy
import csv
import errno
import glob
import hashlib
import io
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import (Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO,
                    Tuple, Union)

import torch
from torch.utils.data import DataLoader, Dataset

from . import distributed as D
from . import resample
from .calibration import Calibration, calibration_from_info
from .checkpoint import TRUST_FLAG_HELP, CheckpointError
from .loaders import ContiguousShardSampler, keep_from_workers, worker_started
from .metrics import evaluate, format_metrics, has_labels
from .options import OptionError
from .robust import SkipBadItems, SkipCollate
from .startup import INTERRUPTED_STATUS
from .utils import out_of_memory, out_of_memory_said, reuse_freed_memory

CSV_COLUMNS = ("name", "score", "calibrated", "error", "note")
CLIP_COLUMN = "clip_scores"  # with --per-clip: the raw score of every clip, space-separated, in temporal order
UNIT_COLUMN = "fastvqa_score"  # FAST-VQA's released models: their [0, 1] score (UnitScale)
CHECKPOINT_FOLDERS = ("runs", "pretrained_weights")  # searched recursively for the trainers' own checkpoints


class NoCheckpointError(CheckpointError):
    """No checkpoint given and none found in the usual places."""


class UsageError(ValueError):
    """A command line that cannot run as given: a flag that does not apply, a ``--list`` naming no files, a file
    of the other tree's medium."""


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
    frames: int = 0  # frames decoded for it (videos)
    unit: Optional[float] = None  # FAST-VQA's [0, 1] score (released FAST-VQA models only)

    def csv_row(self, per_clip: bool = False, unit: bool = False) -> List[str]:
        fmt = lambda v: "" if v is None else repr(float(v))
        row = [self.name, fmt(self.score), fmt(self.calibrated), " ".join(self.error.split()),
               " ".join(self.note.split())]
        if per_clip:
            row.append(" ".join(fmt(c) for c in self.clip_scores or ()))
        if unit:
            row.append(fmt(self.unit))
        return row


@dataclass(frozen=True)
class UnitScale:
    """FAST-VQA's [0, 1] score of a raw score, as its ``vqa.py`` computes it: ``sigmoid((raw - mean) / std)``,
    with the constants it publishes per released model (:mod:`samavqa.presets`)."""

    mean: float
    std: float

    def __call__(self, raw: float) -> float:
        return 1.0 / (1.0 + math.exp(-(float(raw) - self.mean) / self.std))


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
    list's folder; blank lines and lines starting with ``#`` (comments) are skipped; a UTF-8 byte-order mark and
    Windows line endings are fine. Names are kept whole (a
    file name may hold ``#`` or spaces inside; leading and trailing spaces are dropped)."""
    try:
        with open(list_file, "r", encoding="utf-8-sig") as f:  # (a byte-order mark, as some editors save it)
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"--list {list_file!r}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--list {list_file!r}: cannot read it as a text file ({e})") from None
    base = os.path.dirname(os.path.abspath(list_file))
    out = []
    for line in lines:
        name = line.strip()
        if name and not name.startswith("#"):
            out.append((name, os.path.join(base, os.path.expanduser(name))))
    if not out:
        raise UsageError(f"--list {list_file!r} names no {kind} files (one path per line; lines starting with # are "
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
    """A checkpoint (or ONNX graph) file in a scorer's provenance: where it was read (absolute path, modification
    time) and its size. :meth:`OutputFile.start` adds the sha256 of its content, which is what ``--resume``
    compares: only runs that write an output file read it a second time for that."""
    st = os.stat(path)
    return {"checkpoint": os.path.abspath(path), "checkpoint_size": st.st_size, "checkpoint_mtime": st.st_mtime}


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes, read 8 MiB at a time (0.10-0.14 s for a 127 MB FAST-VQA-B checkpoint here)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
                        num_workers=max(0, int(num_workers)), collate_fn=SkipCollate(),
                        worker_init_fn=worker_started)  # (a SIGTERM to the process group: see worker_started)
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
    decoded = batch["decoded"].tolist() if "decoded" in batch else [0] * len(indices)  # (videos: frames decoded)
    rows = []
    for index, scored, note, frames in zip(indices, results, notes, decoded):
        score, clips = scored if isinstance(scored, tuple) else (scored, None)
        rows.append(ScoreRow(names(index), float(score), calibration(float(score)) if calibration else None,
                             note=str(note), clip_scores=None if clips is None else [float(c) for c in clips],
                             index=index, frames=int(frames)))
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
    row written whole as it comes (no buffer), so a stopped command leaves every finished row. ``enabled=False``:
    writes nothing (ranks other than 0).

    A file that cannot be written (an :class:`OSError`: the disk full, a quota reached, an I/O error, a file system
    turned read-only) raises :class:`WriteFailed`, once: a row written in part is cut off again (the file ends
    with its last complete row) and nothing more is written, :meth:`close` included. ``rows``: the rows written
    whole (the header not counted).
    """

    def __init__(self, path: str, columns: Sequence[str], append: bool = False, enabled: bool = True) -> None:
        self.path, self.file, self.rows, self.end = path, None, 0, 0
        self.stdout = path == "-"
        self._line = io.StringIO()
        self._csv = csv.writer(self._line)
        if not enabled:
            return
        if self.stdout:
            self.file = sys.stdout
        else:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                # unbuffered bytes: a failed write leaves nothing in a buffer that closing would write again
                self.file = open(path, "ab" if append else "wb", buffering=0)
                self.end = os.fstat(self.file.fileno()).st_size  # (appending: the file's end)
            except OSError as e:
                self._fail(e)
        if self.stdout or self.end == 0:
            self._put(columns)

    def write(self, row: Sequence[Any]) -> None:
        if self.file is not None:
            self._put(row)
            self.rows += 1

    def _put(self, row: Sequence[Any]) -> None:
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(row)
        if self.stdout:
            self.file.write(self._line.getvalue())  # type: ignore[union-attr]
            self.file.flush()  # type: ignore[union-attr]
            return
        data = self._line.getvalue().encode("utf-8")
        try:
            done = 0
            while done < len(data):  # (after a short write, the next one says why it cannot go on)
                done += self.file.write(data[done:]) or 0  # type: ignore[union-attr]
        except OSError as e:
            self._fail(e)
        self.end += len(data)

    def _fail(self, error: OSError) -> None:
        """Cut a row written in part off again and close the file, writing nothing more; :class:`WriteFailed`."""
        if self.file is not None:
            try:
                os.ftruncate(self.file.fileno(), self.end)  # (needs no space)
            except (OSError, AttributeError, ValueError):
                pass  # left as it is: --resume drops an unterminated last row (_rows_of)
            self.close(quiet=True)
        raise WriteFailed(self.path, error) from None

    def close(self, quiet: bool = False) -> None:
        """Close the file; a write error that the file system reports only now (network file systems) is
        :class:`WriteFailed` too, unless ``quiet`` (a stop or an error is being said). Nothing to do once the
        writer failed."""
        file, self.file = self.file, None
        if file is None or self.stdout:
            return
        try:
            file.close()
        except OSError as e:
            if not quiet:
                raise WriteFailed(self.path, e) from None

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.close(quiet=kind is not None)  # (what ended the block is what is said)


def test_metrics(key: str, pairs: Sequence[Tuple[Optional[float], float]],
                 kind: str) -> Tuple[str, Optional[Dict[str, float]]]:
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
    unit_scale: Optional[UnitScale] = None  # FAST-VQA's [0, 1] score (its released models)
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
        rows = score_items(self.dataset(paths, progress and len(paths) == 1), (self.read_error,), score,
                           paths.__getitem__, None, batch_size, num_workers, self.calibration, progress)
        for row in rows:
            if self.unit_scale is not None and row.score is not None:
                row.unit = self.unit_scale(row.score)
            yield row

    def score_paths(self, paths: Sequence[str], batch_size: int = 1, num_workers: int = 0, progress: bool = True,
                    **batch_kwargs: Any) -> List[ScoreRow]:
        """:meth:`rows` as a list."""
        return list(self.rows(paths, batch_size, num_workers, progress, **batch_kwargs))

    def __call__(self, x: Any, calibrated: bool = False, fastvqa: bool = False,
                 **tensor_kwargs: Any) -> Union[float, List[float]]:
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
        values = [self._scaled(s, calibrated, fastvqa) for s, _, _ in scored]
        return values if batched else values[0]

    def _scaled(self, raw: float, calibrated: bool, fastvqa: bool) -> float:
        """The raw score, or on request its calibrated / FAST-VQA [0, 1] value (ValueError when there is none)."""
        if calibrated:
            if self.calibration is None:
                raise ValueError(f"no calibrated score: {self.calibration_note}")
            return self.calibration(raw)
        if fastvqa:
            if self.unit_scale is None:
                raise ValueError("no FAST-VQA [0, 1] score: only FAST-VQA's released models (-m FAST-VQA, "
                                 "FAST-VQA-M, FasterVQA, FasterVQA-MS, FasterVQA-MT) have its constants")
            return self.unit_scale(raw)
        return float(raw)


# ----------------------------------------------------------------------------------------------- --output
class OutputError(ValueError):
    """The ``--output`` CSV cannot be used as asked (not writable, exists, locked, made with another model)."""


class WriteFailed(OutputError):
    """Writing a file of the ``--output`` failed (an :class:`OSError`: ENOSPC, EDQUOT, EIO, EROFS, ...); ``path``
    the file, ``reason`` the system's words. The scoring command says it in one line with how to go on
    (:meth:`_ScoringRun.cannot_write`); the complete rows stay."""

    def __init__(self, path: str, error: OSError) -> None:
        self.path, self.errno = path, error.errno
        self.reason = error.strerror or str(error)
        super().__init__(f"cannot write {path} ({self.reason})")


def _rows_of(path: str, columns: Sequence[str]) -> List[List[str]]:
    """The complete rows of a CSV this command wrote: a last row cut short (by a kill, a full disk) is dropped --
    one without its line end too, as its last field may be cut short (a score's last digits)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
        rows = list(csv.reader(io.StringIO(text)))
        if text and not text.endswith(("\n", "\r")):
            rows = rows[:-1] if len(rows) > 1 else rows  # (the header alone: a column check says what it is)
    except UnicodeDecodeError:
        raise OutputError(f"--resume: {path} is not a CSV this command wrote (not UTF-8 text); pass --overwrite to "
                          "start it again, or another --output") from None
    if rows and rows[0] != list(columns):
        raise OutputError(f"--resume: {path} has the columns {','.join(rows[0])}, this command writes "
                          f"{','.join(columns)}; pass --overwrite to start it again")
    return [r for r in rows[1:] if len(r) == len(columns)]


def _writable(path: str) -> bool:
    """Whether ``path`` (a file, opened for appending, or a folder, by creating a file in it) can be written:
    tried, not judged by permission bits (root ignores them; a read-only mount does not)."""
    try:
        if os.path.isdir(path):
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            with open(path, "a"):
                pass
    except OSError:
        return False
    return True


def _differences(keys: Sequence[str], before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """``key before, now after; ...`` for an output record's differing keys; a checkpoint of other content is
    named by its paths and digests (its size then says nothing more)."""
    said = []
    if "checkpoint_sha256" in keys:
        said.append(f"checkpoint {before.get('checkpoint')} (sha256 {str(before.get('checkpoint_sha256'))[:12]}...), "
                    f"now {now.get('checkpoint')} (sha256 {str(now.get('checkpoint_sha256'))[:12]}...)")
        keys = [k for k in keys if k not in ("checkpoint_sha256", "checkpoint_size")]
    return "; ".join(said + [f"{k} {before.get(k)!r}, now {now.get(k)!r}" for k in keys])


class OutputFile:
    """The ``--output`` CSV of a scoring command: checked before any work, locked while written, resumable.

    Files next to it: ``<output>.lock`` (held with :func:`fcntl.flock` by the writing process, so a second
    command writing the same file stops with one line), ``<output>.meta.json`` (what the rows were made with:
    :attr:`Scorer.provenance` and the columns; ``--resume`` refuses other settings) and, under ``torchrun``,
    ``<output>.part{rank}`` (each process's rows, merged into the CSV in file order at the end).
    """

    def __init__(self, path: str, resume: bool = False, overwrite: bool = False) -> None:
        self.path, self.resume, self.overwrite = os.path.abspath(path), resume, overwrite
        self.lock_file: Optional[TextIO] = None

    @property
    def meta_path(self) -> str:
        return self.path + ".meta.json"

    def part(self, rank: int) -> str:
        return f"{self.path}.part{rank}"

    def parts(self) -> List[str]:
        return sorted(glob.glob(glob.escape(self.path) + ".part[0-9]*"))

    def check(self) -> None:
        """Before any work: the folder can be created and written, the file is not a folder, and an existing
        file is only written with ``--resume`` or ``--overwrite``."""
        folder = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise OutputError(f"--output {self.path} is a folder: name a CSV file (e.g. {self.path}/scores.csv)")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--output {self.path}: cannot create its folder {folder} ({e.strerror})") from None
        where = self.path if os.path.exists(self.path) else folder
        if not _writable(where):
            raise OutputError(f"--output {self.path}: not writable ({where} is read-only or not ours to write)")
        if (os.path.exists(self.path) or self.parts()) and not (self.resume or self.overwrite):
            raise OutputError(f"--output {self.path} exists: pass --resume to score only the files it lacks, or "
                              "--overwrite to replace it")

    def lock(self) -> None:
        """Hold ``<output>.lock`` exclusively (until :meth:`unlock`); another holder is one line naming the file."""
        import fcntl

        while True:
            try:
                f = open(self.path + ".lock", "a")
            except OSError as e:  # (a folder with no room for one more file)
                raise OutputError(f"--output {self.path}: cannot create {self.path}.lock ({e.strerror})") from None
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                raise OutputError(f"--output {self.path} is being written by another command (it holds "
                                  f"{self.path}.lock); wait for it to finish or write another file") from None
            if os.path.exists(f.name) and os.stat(f.name).st_ino == os.fstat(f.fileno()).st_ino:
                self.lock_file = f
                keep_from_workers(f.fileno())  # (a loader worker outliving a kill -9 must not hold it)
                return
            f.close()  # the holder removed the file as we opened it: take the new one

    def unlock(self) -> None:
        if self.lock_file is not None:
            keep_from_workers(self.lock_file.fileno(), keep=False)
            os.remove(self.lock_file.name)  # removed while held, so a waiting opener retries (see lock)
            self.lock_file.close()
            self.lock_file = None

    #: provenance keys that say where the model and its options were read from, not what they are: ``--resume``
    #: goes on when only these changed (the same checkpoint copied to another folder or machine, downloaded again)
    WHERE_KEYS: ClassVar[Tuple[str, ...]] = ("checkpoint", "checkpoint_mtime", "options")
    #: what a record holds since ``--resume`` compares content; one without it (an earlier version's) is compared
    #: on the keys it has, locations included, as that version did
    CONTENT_KEY: ClassVar[str] = "checkpoint_sha256"

    def start(self, provenance: Mapping[str, Any], columns: Sequence[str]) -> Optional[str]:
        """Record what the rows are made with: the provenance, the checkpoint's sha256 and the columns. With
        ``--resume`` an existing file must have been made with the same content (one line naming what differs);
        returns a note when the checkpoint or options were read from elsewhere than before, else None. Without
        ``--resume`` old rows and parts are removed."""
        meta = json.loads(json.dumps(dict(provenance, columns=list(columns)), default=str))
        if meta.get("checkpoint"):
            meta[self.CONTENT_KEY] = file_sha256(meta["checkpoint"])
        if self.resume and (os.path.exists(self.path) or self.parts()):
            return self._same_as_before(meta)
        for old in [self.path] + self.parts():
            if os.path.exists(old):
                os.remove(old)
        try:
            with open(self.meta_path, "w") as f:
                json.dump(meta, f, indent=1)
        except OSError as e:
            raise WriteFailed(self.meta_path, e) from None
        return None

    def _same_as_before(self, meta: Mapping[str, Any]) -> Optional[str]:
        try:
            with open(self.meta_path) as f:
                before = json.load(f)
        except (OSError, ValueError):
            raise OutputError(f"--resume: {self.path} has no readable {os.path.basename(self.meta_path)} saying "
                              "what it was made with; pass --overwrite to start it again") from None
        by_content = self.CONTENT_KEY in before
        keys = sorted(set(meta) | set(before)) if by_content else sorted(before)
        differ = [k for k in keys if meta.get(k) != before.get(k) and not (by_content and k in self.WHERE_KEYS)]
        if differ:
            said = _differences(differ, before, meta)
            raise OutputError(f"--resume: {self.path} was made with other settings ({said}); use the same model and "
                              "options, or pass --overwrite to start it again")
        moved = [k for k in ("checkpoint", "options") if meta.get(k) != before.get(k)]
        if moved == ["checkpoint", "options"] and meta.get("options") == str(before.get("options")).replace(
                str(before["checkpoint"]), str(meta["checkpoint"])):
            moved.remove("options")  # "the options stored in <checkpoint>": they moved with it
        if not moved:
            return None
        said = "; ".join(f"{k} now {meta.get(k)} (was {before.get(k)})" for k in moved)
        digest = str(meta.get(self.CONTENT_KEY))[:12]
        return f"--resume: {said}: the same checkpoint content (sha256 {digest}...) and settings"

    def done(self, columns: Sequence[str]) -> Dict[str, List[str]]:
        """``name -> row`` of the rows already written (the CSV, then any parts)."""
        out: Dict[str, List[str]] = {}
        for path in [self.path] + self.parts():
            if os.path.exists(path) and os.path.getsize(path):
                out.update((r[0], r) for r in _rows_of(path, columns))
        return out

    def merge(self, names: Sequence[str], columns: Sequence[str]) -> int:
        """Rewrite the CSV from the CSV and the parts, one row per name in ``names`` order (those that have one;
        rows of other names follow, never dropped), and remove the parts; returns the number of rows. Written to
        a temporary file first, then renamed."""
        rows = self.done(columns)
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(columns)
                w.writerows(rows[n] for n in names if n in rows)
                listed = set(names)
                w.writerows(r for n, r in rows.items() if n not in listed)  # rows of files not asked for now: kept
        except OSError as e:  # the CSV and the parts are as they were: --resume merges them
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise WriteFailed(self.path, e) from None
        os.replace(tmp, self.path)
        for part in self.parts():
            os.remove(part)
        return len(rows)


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
    p.add_argument("--set", dest="set_options", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="change an option of the scoring options (nested keys dotted; repeatable), e.g. --set "
                        "data.val.args.sample_types.fragments.num_clips=2; checked like the file")
    p.add_argument("--onnx", metavar="FILE", help="score with this ONNX graph (sama-export-vqa / sama-export-iqa) on "
                                                  "ONNX Runtime: the sampling and calibration it was exported with, "
                                                  "no PyTorch model and no --ckpt needed")
    p.add_argument("--output", help=f"CSV file ({','.join(CSV_COLUMNS)}); '-' for stdout. Default for several "
                                    f"{kind}s: stdout")
    p.add_argument("--resume", action="store_true", help="with --output: score only the files the CSV (and the "
                                                        "parts a torchrun left) lacks, and append them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output CSV")
    p.add_argument("--batch-size", type=_counted(1), default=batch_size, help=batch_help)
    p.add_argument("--num-workers", type=_counted(0), default=None,
                   help=f"loader worker processes reading the next {kind}s while the model scores (default: "
                        f"{default_workers()} here for several {kind}s: half the CPU cores, at most 4; 0 for one)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on GPUs; last digits may change)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="let the media libraries print their own log lines")
    return p


def _counted(least: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``least`` (a batch of 0 or -3 files, or -1 workers, were taken as they came)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {least}"
    return parse


def media_items(args: argparse.Namespace, extensions: Sequence[str], kind: str) -> List[Tuple[str, str]]:
    """``(name for the CSV, path)`` of the files a command line names: ``--dir`` [``--recursive``], ``--list`` or
    the files themselves."""
    if args.recursive and not args.dir:
        raise UsageError("--recursive applies to --dir only")
    if args.dir:
        return list_media(args.dir, extensions, kind, recursive=args.recursive)
    if args.list:
        return read_file_list(args.list, kind)
    return [(p, p) for p in args.files]


def default_workers() -> int:
    """Loader workers for several files: half the CPU cores, at most 4 (decoding overlaps the model)."""
    return max(0, min(4, (os.cpu_count() or 1) // 2))


def _score_line(r: ScoreRow) -> str:
    line = f"{r.name}: score {r.score:.6f}"
    if r.calibrated is not None:
        line += f", calibrated {r.calibrated:.4f}"
    if r.unit is not None:
        line += f", FAST-VQA score {r.unit:.5f} (range [0,1])"
    if r.clip_scores is not None:
        line += "; clip scores " + " ".join(f"{c:.6f}" for c in r.clip_scores)
    return line


class Stopped(BaseException):
    """SIGTERM while scoring (Ctrl-C is :class:`KeyboardInterrupt`): ``status`` is the exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _terminated(signum: int, frame: Any) -> None:
    raise Stopped(128 + signum)


def resume_command(argv: Optional[Sequence[str]]) -> str:
    """The command line that goes on after a stop: this one with ``--resume`` (without ``--overwrite``)."""
    prog = sys.argv[0]
    head = [os.path.basename(sys.executable), prog] if prog.endswith(".py") else [os.path.basename(prog)]
    rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--overwrite"]
    return shlex.join(head + rest + ([] if "--resume" in rest else ["--resume"]))


#: what ends a scoring command with ``error: <message>`` and exit status 2: a bad option, checkpoint, output or
#: command line, a missing file (and running out of memory: :func:`samacore.utils.out_of_memory`). Anything else is
#: a fault of the program, shown with its traceback (unreadable media are rows with an error, not these).
USAGE_ERRORS = (OptionError, CheckpointError, OutputError, UsageError, FileNotFoundError)


def _agree(error: str) -> str:
    """The first non-empty error of any rank (every rank calls it at the same point); "" when none."""
    return next((e for e in D.all_gather_list([error]) if e), "")


def run_scoring(args: argparse.Namespace, load_scorer: Callable[..., Scorer], extensions: Sequence[str],
                kind: str, scorer_args: Optional[Mapping[str, Any]] = None,
                check_given: Optional[Callable[[str], None]] = None, argv: Optional[Sequence[str]] = None,
                commands: Sequence[str] = ()) -> int:
    """The body of a scoring command: list the files, check the output, load the scorer, score and write.

    ``scorer_args``: the tree's own keyword arguments of ``load_scorer``. ``check_given(path)`` may refuse a
    file named on the command line (e.g. an image given to the video command) with a :class:`UsageError` before
    any work starts. Under ``torchrun`` the files are split between the processes. Returns the exit status: 2 for
    usage / checkpoint / option / output errors and running out of memory, 1 if every file failed, 130 / 143 when
    stopped by Ctrl-C / SIGTERM (finished rows kept), else 0. ``commands``: the names of the script and console
    command running this; in their own process (:func:`is_command_process`) freed memory is reused
    (:func:`samacore.utils.reuse_freed_memory`) and the process ends with the status (:func:`command_status`); a
    caller's program keeps its allocator and gets the status returned.
    """
    if is_command_process(commands):
        reuse_freed_memory()
    return command_status(_run_scoring(args, load_scorer, extensions, kind, scorer_args, check_given, argv), commands)


def _run_scoring(args: argparse.Namespace, load_scorer: Callable[..., Scorer], extensions: Sequence[str], kind: str,
                 scorer_args: Optional[Mapping[str, Any]], check_given: Optional[Callable[[str], None]],
                 argv: Optional[Sequence[str]]) -> int:
    """:func:`run_scoring`'s work; returns the exit status."""
    output: Optional[OutputFile] = None
    try:
        # an impossible --device is a usage error; an ONNX graph runs on the CPU whatever the machine has
        D.init_distributed(*D.plan_this_process("cpu" if args.onnx else args.device))
        resample.backend()  # and so is a bad SAMA_RESAMPLE_BACKEND, said before any work
        items = media_items(args, extensions, kind)
        if check_given is not None and args.files:
            for path in args.files:
                check_given(path)
        output = _checked_output(args, len(items))
        scorer = load_scorer(args.ckpt, args.options, args.stype, args.device, args.bf16,
                             trust_checkpoint=args.trust_checkpoint, sets=args.set_options, onnx=args.onnx,
                             **dict(scorer_args or {}))
        return _ScoringRun(args, scorer, items, output, kind, argv).run()
    except WriteFailed as e:  # while scoring: said by the process that failed (under torchrun: any rank)
        if D.world_size() > 1:
            print(f"error: rank {D.rank()}: {e}", file=sys.stderr, flush=True)
        else:
            _say(f"error: {e}")
        return 2
    except USAGE_ERRORS as e:
        _say(f"error: {e}")
        return 2
    except RuntimeError as e:
        if not out_of_memory(e):
            raise
        said = out_of_memory_said(e, "score with a smaller --batch-size or fewer --num-workers, or on another "
                                     "--device")
        if D.world_size() > 1:  # a rank runs out on its own: said by that rank, whichever it is
            print(f"error: rank {D.rank()}: {said}", file=sys.stderr, flush=True)
        else:
            _say(f"error: {said}")
        return 2
    finally:
        if output is not None:
            output.unlock()
        D.cleanup()


def is_command_process(commands: Sequence[str]) -> bool:
    """Whether this process exists to run one of ``commands``: its ``__main__`` is that script or console command
    (e.g. ``vqa.py`` / ``sama-vqa``), not a test runner or a caller's program that calls ``main()``."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return bool(path) and bool(sys.argv) and os.path.basename(path) in commands and \
        os.path.realpath(path) == os.path.realpath(sys.argv[0])


def command_status(status: int, commands: Sequence[str]) -> int:
    """``status`` -- or, in the process of one of ``commands`` (:func:`is_command_process`), the end of the process
    right here with ``status``.

    By then every row is written and every file closed; what remains is the interpreter's teardown, which in a
    process that has imported PyTorch takes 0.5-0.7 s (freeing its modules and operator tables) of every scoring
    run. Standard output and error are flushed first; nothing of ours is registered with ``atexit``.
    """
    if not is_command_process(commands):
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _say(line: str) -> None:
    if D.is_main():
        print(line, file=sys.stderr, flush=True)


def _warn(line: str) -> None:
    """A line on stderr that leaves the progress bar whole (printed above it)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(line, file=sys.stderr, flush=True)
        return
    tqdm.write(line, file=sys.stderr)


def _checked_output(args: argparse.Namespace, n_files: int) -> Optional[OutputFile]:
    """The ``--output`` file, checked and (rank 0) locked; None when the rows go to stdout / one score is
    printed."""
    if args.resume and args.overwrite:
        raise OutputError("--resume and --overwrite exclude each other")
    if not args.output or args.output == "-":
        if args.resume:
            raise OutputError("--resume needs --output FILE (the CSV to go on with)")
        if D.world_size() > 1:
            raise OutputError(f"torchrun with {D.world_size()} processes needs --output FILE (each process writes "
                              "its part next to it)")
        return None
    output = OutputFile(args.output, args.resume, args.overwrite)
    error = ""
    try:
        output.check()
        if D.is_main():
            output.lock()
    except OutputError as e:
        error = str(e)
    error = _agree(error)
    if error:
        raise OutputError(error)
    return output


class _ScoringRun:
    """A scoring command's work once everything is checked: resume, split the files between the processes,
    write each row as it comes (the CSV, this process's part, stdout, or the one score printed), merge, and
    say how it went. Ctrl-C / SIGTERM end it cleanly with the finished rows kept."""

    def __init__(self, args: argparse.Namespace, scorer: Scorer, items: Sequence[Tuple[str, str]],
                 output: Optional[OutputFile], kind: str, argv: Optional[Sequence[str]]) -> None:
        self.args, self.scorer, self.items, self.output = args, scorer, list(items), output
        self.kind, self.argv = kind, argv
        self.per_clip = bool(getattr(args, "per_clip", False))
        self.unit = scorer.unit_scale is not None
        self.columns = (list(CSV_COLUMNS) + ([CLIP_COLUMN] if self.per_clip else [])
                        + ([UNIT_COLUMN] if self.unit else []))
        self.single = output is None and len(self.items) == 1
        self.done: Dict[str, List[str]] = {}
        self.scored = self.failed = self.frames = 0  # this process's rows of this run

    def run(self) -> int:
        todo = self._todo()  # (a refused --resume is the only line said)
        for note in self.scorer.notes + [self.scorer.calibration_note]:
            _say(f"note: {note}")
        started = time.time()
        # Each process scores its own files: one that fails there (out of memory, a fault) publishes why, so the
        # others end within seconds saying so (samacore.distributed.failing_together) instead of waiting in the
        # closing collectives until a launcher or a timeout stops them. (What _todo refuses, every process refuses.)
        with D.failing_together():
            status = self._stream(todo)
            if status:
                self._say_stopped(status)
                return status
            return self._finish(time.time() - started)

    def _todo(self) -> List[Tuple[str, str]]:
        """This process's share of the files the output lacks (all of them without ``--resume``)."""
        if self.output is None:
            return self.items
        error = ""
        if D.is_main():
            try:
                moved = self.output.start(self.scorer.provenance, self.columns)
            except WriteFailed as e:
                error = self.cannot_write(e, 0)
            except OutputError as e:
                error = str(e)
            else:
                if moved:
                    _say(f"note: {moved}")
        error = _agree(error)
        if error:
            raise OutputError(error)
        self.done = self.output.done(self.columns)
        D.barrier()
        if D.is_main() and (self.done or self.output.parts() or os.path.exists(self.output.path)):
            try:  # one CSV to append to, parts folded in, ending with a whole row (not one cut short)
                self.output.merge([n for n, _ in self.items], self.columns)
            except WriteFailed as e:
                error = self.cannot_write(e, len(self.done))
        error = _agree(error)  # (every rank waits here for the merge)
        if error:
            raise OutputError(error)
        left = [item for item in self.items if item[0] not in self.done]
        if self.done:
            _say(f"note: --resume: {len(self.items) - len(left)} of {len(self.items)} {self.kind}s are in "
                 f"{self.output.path} already; scoring the other {len(left)}")
        return left[D.rank()::D.world_size()]

    def _writer(self) -> Optional[RowWriter]:
        if self.single:
            return None
        if self.output is None:
            return RowWriter("-", self.columns)
        path = self.output.part(D.rank()) if D.world_size() > 1 else self.output.path
        return RowWriter(path, self.columns, append=D.world_size() == 1)

    def _stream(self, todo: Sequence[Tuple[str, str]]) -> int:
        """Score ``todo``, each row written as it comes; the exit status of a stop (0: all done). An output that
        cannot be written is :class:`WriteFailed` saying how to go on (:meth:`cannot_write`)."""
        writer: Optional[RowWriter] = None
        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
        workers = self.args.num_workers if self.args.num_workers is not None else (
            default_workers() if len(todo) > 1 else 0)
        try:
            writer = self._writer()
            for row in self.scorer.rows([p for _, p in todo], self.args.batch_size, workers,
                                        not self.args.no_progress, **({"per_clip": True} if self.per_clip else {})):
                row.name = todo[row.index][0]
                self._emit(row, writer)
            if writer is not None:
                writer.close()  # (a write error the file system reports only now is said like the others)
        except KeyboardInterrupt:
            return INTERRUPTED_STATUS
        except Stopped as e:
            return e.status
        except WriteFailed as e:
            in_csv = len(self.done) if self.output is not None and e.path == self.output.path else 0
            e.args = (self.cannot_write(e, in_csv + (writer.rows if writer is not None else 0)),)
            raise
        finally:
            if writer is not None:
                writer.close(quiet=True)  # (a stop or an error: what is said; every row is written whole already)
            if main_thread:
                signal.signal(signal.SIGTERM, before)
        return 0

    def cannot_write(self, e: WriteFailed, rows: int) -> str:
        """The line for an output file that cannot be written (after ``rows`` complete rows in it): which file,
        why, and how to go on."""
        assert self.output is not None
        what = "" if e.path == self.output.path else f" {e.path}"
        fix = ("free space, then continue with --resume" if e.errno in (errno.ENOSPC, errno.EDQUOT)
               else "continue with --resume once it can be written")
        counted = f"{rows} row{'' if rows == 1 else 's'}"
        return (f"--output {self.output.path}: cannot write{what} ({e.reason}) after {counted}; {fix}: "
                f"{resume_command(self.argv)}")

    def _emit(self, row: ScoreRow, writer: Optional[RowWriter]) -> None:
        self.scored += row.score is not None
        self.failed += row.score is None
        self.frames += row.frames
        if row.note:
            _warn(f"warning: {row.name}: {row.note}")
        if writer is not None:
            writer.write(row.csv_row(self.per_clip, self.unit))
            if row.error:
                _warn(f"warning: {row.name}: {row.error}")
        elif row.score is None:
            print(f"error: {row.error}", file=sys.stderr, flush=True)
        else:
            print(_score_line(row), flush=True)

    def _say_stopped(self, status: int) -> None:
        how = "Ctrl-C" if status == INTERRUPTED_STATUS else "SIGTERM"
        done = len(self.done) + self.scored + self.failed
        where = ""
        if self.output is not None:
            parts = " and its .part files" if D.world_size() > 1 else ""
            where = f"; the rows are in {self.output.path}{parts}. To go on: {resume_command(self.argv)}"
        what = (f"this process scored {done} {self.kind}s" if D.world_size() > 1
                else f"{done} of {len(self.items)} {self.kind}s scored")
        _say(f"stopped by {how}: {what}{where}")

    def _finish(self, seconds: float) -> int:
        """Merge the parts (rank 0), say how it went; the exit status (1: every file failed)."""
        counts = D.all_gather_list([(self.scored, self.failed, self.frames)])
        scored, failed, frames = (sum(c[k] for c in counts) for k in range(3))
        D.barrier()
        if self.output is not None and D.is_main() and (D.world_size() > 1 or self.done):
            try:
                self.output.merge([n for n, _ in self.items], self.columns)
            except WriteFailed as e:  # the CSV and the parts hold every row: --resume merges them
                e.args = (self.cannot_write(e, len(self.done) + scored + failed),)
                raise
        done_failed = sum(1 for r in self.done.values() if r[1] == "")
        total, bad = len(self.done) + scored + failed, done_failed + failed
        if not self.single:
            rate = (scored + failed) / seconds if seconds > 0 else 0.0
            speed = f" in {seconds:.1f} s ({rate:.2f} {self.kind}s/s" + (
                f", {frames / seconds:.1f} decoded frames/s" if frames and seconds > 0 else "") + ")"
            written = f"; CSV written to {self.output.path}" if self.output is not None else ""
            _say(f"note: {total - bad} of {total} {self.kind}s scored ({bad} failed){speed}{written}")
        return 1 if total and bad == total else 0


# ----------------------------------------------------------------------------------------------- options, ONNX
def with_sets(opt: Mapping[str, Any], source: str, sets: Sequence[str],
              check: Callable[[Dict[str, Any]], Any]) -> Tuple[Dict[str, Any], str]:
    """``opt`` with ``--set KEY.PATH=VALUE`` items applied and checked again by the tree's ``check``; the source
    says so. Without items: ``opt`` and ``source`` as they are."""
    if not sets:
        return dict(opt), source
    from .options import apply_sets

    changed = copy.deepcopy(dict(opt))
    apply_sets(changed, sets)
    check(changed)
    return changed, f"{source} with --set {' '.join(sets)}"


def refuse_beside_onnx(ckpt: Optional[str], options: Any, sets: Sequence[str], bf16: bool, trust_checkpoint: bool,
                       device: Optional[str], model: Optional[str] = None) -> None:
    """A :class:`UsageError` when settings that an ONNX graph replaces come with ``--onnx`` (``load_scorer``'s
    arguments of those names; the CPU as device is fine): the graph carries its weights, sampling and calibration
    and runs in fp32 on ONNX Runtime's CPU provider, so they would be ignored without a word."""
    given = {"--ckpt": ckpt, "--options": options, "-m": model, "--set": list(sets), "--bf16": bf16,
             "--trust-checkpoint": trust_checkpoint, "--device": None if device in (None, "cpu") else device}
    extra = [flag for flag, value in given.items() if value not in (None, False, "", [])]
    if extra:
        verb, pronoun = ("does", "it") if len(extra) == 1 else ("do", "them")
        raise UsageError(f"--onnx scores with the graph alone (its weights, sampling and calibration are stored in it; "
                         f"fp32 on the CPU): {', '.join(extra)} {verb} not apply, leave {pronoun} out")


def onnx_model(path: str, tree: str) -> Tuple[Any, Dict[str, Any]]:
    """``(runner, metadata)`` of an ONNX graph written by ``sama-export-vqa`` / ``sama-export-iqa`` for ``tree``
    (``vqa`` / ``iqa``): an :class:`OptionError` in one line for a missing file, another tree's graph or a file
    the exporters did not write. ONNX Runtime is imported only here."""
    if os.path.isdir(os.path.expanduser(path)):
        raise OptionError(f"--onnx {path} is a folder: give the .onnx file an export wrote")
    if not os.path.isfile(os.path.expanduser(path)):
        raise OptionError(f"--onnx {path}: file not found")
    from .onnx_export import ExportError, load_onnx_model

    try:
        runner = load_onnx_model(path)
    except ExportError as e:
        raise OptionError(f"--onnx {e}") from None
    except Exception as e:  # ONNX Runtime's own errors for a file that is no ONNX graph
        raise OptionError(f"--onnx {path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:200]})") from None
    found = runner.metadata.get("tree")
    if found != tree:
        other = {"vqa": "VQA/vqa.py", "iqa": "IQA/iqa.py"}.get(found, "the other tree")
        raise OptionError(f"--onnx {path} is {'an' if found == 'iqa' else 'a'} {str(found).upper()} model: score it "
                          f"with {other}")
    return runner, runner.metadata


def onnx_calibration(meta: Mapping[str, Any]) -> Tuple[Optional[Calibration], str]:
    """The calibration an ONNX graph was exported with (its metadata), and the note to print."""
    cal = meta.get("calibration")
    if not isinstance(cal, Mapping):
        return None, "the ONNX graph carries no calibration (its checkpoint had none): calibrated column left empty"
    calibration = Calibration(**{k: cal[k] for k in ("label_mean", "label_std", "pred_mean", "pred_std", "n")
                                 if k in cal})
    return calibration, calibration.describe()


def refuse_other_media(flag: str, reason: Callable[[str], Optional[str]]) -> Callable[[str], None]:
    """A check of the files named with ``flag`` (``-v`` / ``-i``): ``reason(path)`` says why a file is the other
    tree's medium (a still image given to the video scorer, a video to the image scorer), which is a usage error
    (exit 2) said before any work starts."""
    def check(path: str) -> None:
        why = reason(path) if os.path.isfile(path) else None
        if why:
            raise UsageError(f"{flag} {path}: {why}")

    return check


def load_fitting(load: Callable[[], Any], path: str, source: str, what_to_pass: str) -> List[str]:
    """Run ``load()`` (weights of ``path`` into a model built from the options of ``source``) and return its
    report's notes; weights that do not fit are one error naming the file, the options and ``what_to_pass``."""
    try:
        report = load()
    except CheckpointError as e:
        raise CheckpointError(f"{path} does not fit the model built from {source} ({e}): pass {what_to_pass}") from None
    return [str(n) for n in getattr(report, "notes", [])]
