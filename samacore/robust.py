"""Skipping unreadable samples during training without hanging or silently losing data.

A bad media file (unreadable, truncated, not an image / video) should cost one sample, not a whole run, but a
data set that is largely broken should stop the run with a clear message. The pieces:

* :class:`SkipBadItems` wraps a dataset; an item whose loading raises one of the given exception types is
  returned as a :class:`BadItem` (index, name, reason) instead of raising. This runs inside DataLoader workers,
  so a bad file never kills or blocks a worker.
* :class:`SkipCollate` wraps a collate function: it drops :class:`BadItem` entries, collates the rest and returns
  ``(batch_or_None, [BadItem, ...])`` so the bad items travel back to the main process with the batch.
* :class:`BadItemLog` (main process) records every distinct bad item, logs it once with its reason, writes the
  skip list (``name<TAB>reason<TAB>where`` per line) and raises :class:`TooManyBadItems` as soon as more than
  ``max_bad_fraction`` of one data set's items are bad.
* :class:`SkippingLoader` ties them together around an existing ``DataLoader``: it installs the collate wrapper,
  yields only good batches (a batch whose items were all bad is skipped), and feeds the log.
  ``len()``, ``.sampler``, ``.dataset`` are those of the wrapped loader, so the engine's loops take it as is.

Usage::

    log = BadItemLog(max_bad_fraction=0.05, skip_file="runs/x/skipped.txt")
    ds = SkipBadItems(dataset, errors=(ImageReadError,), name_fn=lambda i: dataset.paths[i])
    loader = SkippingLoader(build_loader(ds, opt, train=True), log, where="train split 00")

Under ``torchrun`` each rank sees only its shard of a data set, so it judges the share of bad items against its
shard's length (the same limit as one process, on each rank's part); a rank that stops ends the others too
(:func:`samacore.distributed.failing_together`). Each rank writes its own list.

Items already known to be bad (recorded by the log) are not read again in later epochs: the log's names are
copied into the dataset wrapper before each pass (DataLoader workers get a fresh copy of the dataset every
epoch unless ``persistent_workers`` is on, in which case they simply re-read and re-fail, which is harmless).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from . import distributed as D

__all__ = ["BadItem", "BadItemLog", "SkipBadItems", "SkipCollate", "SkippingLoader", "TooManyBadItems"]


@dataclass(frozen=True)
class BadItem:
    """A sample that could not be loaded: dataset ``index``, ``name`` (usually the file path) and ``reason``."""

    index: int
    name: str
    reason: str


class TooManyBadItems(RuntimeError):
    """More than the allowed share of a data set's items could not be loaded."""


def _default_name(dataset: Any, index: int) -> str:
    paths = getattr(dataset, "paths", None)
    if isinstance(paths, Sequence) and 0 <= index < len(paths):
        return str(paths[index])
    return f"item {index}"


class SkipBadItems(Dataset):
    """Dataset wrapper: items whose loading raises one of ``errors`` come back as :class:`BadItem`.

    Args:
        dataset: any map-style dataset.
        errors: exception types that mean "this item is bad" (e.g. ``(ImageReadError,)``). Anything else is a
            bug and propagates.
        name_fn: ``index -> name`` for messages (default: ``dataset.paths[index]`` when present).
    """

    def __init__(
        self,
        dataset: Dataset,
        errors: Tuple[Type[BaseException], ...] = (OSError,),
        name_fn: Optional[Callable[[int], str]] = None,
    ) -> None:
        self.dataset = dataset
        self.errors = tuple(errors)
        self.name_fn = name_fn
        self.known_bad: Dict[str, str] = {}  # name -> reason; filled from the main process between epochs

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def name(self, index: int) -> str:
        return self.name_fn(index) if self.name_fn is not None else _default_name(self.dataset, index)

    def __getitem__(self, index: int) -> Any:
        name = self.name(index)
        if name in self.known_bad:
            return BadItem(int(index), name, self.known_bad[name])
        try:
            return self.dataset[index]
        except self.errors as e:
            return BadItem(int(index), name, str(e) or type(e).__name__)

    def __getattr__(self, key: str) -> Any:
        # attributes of the wrapped dataset (paths, labels, names, ...) stay reachable
        if key == "dataset":
            raise AttributeError(key)
        return getattr(self.dataset, key)


class SkipCollate:
    """Collate wrapper: ``[items] -> (collated good items or None, [BadItem])``. Picklable (spawned workers)."""

    def __init__(self, collate_fn: Optional[Callable[[List[Any]], Any]] = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, items: List[Any]) -> Tuple[Any, List[BadItem]]:
        bad = [x for x in items if isinstance(x, BadItem)]
        good = [x for x in items if not isinstance(x, BadItem)]
        return (self.collate_fn(good) if good else None), bad


class BadItemLog:
    """Main-process record of bad items over one or more data sets.

    Args:
        max_bad_fraction: the run stops (:class:`TooManyBadItems`) once a data set has more than this share of
            distinct bad items (``bad / len(dataset) > max_bad_fraction``). ``1.0`` never stops.
        skip_file: where the skip list is (re)written whenever a new bad item is found; None: not written.
        logger: where each new bad item is reported once (default: this module's logger).
    """

    def __init__(
        self, max_bad_fraction: float = 0.05, skip_file: Optional[str] = None, logger: Optional[logging.Logger] = None
    ) -> None:
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction!r}")
        self.max_bad_fraction = float(max_bad_fraction)
        self.skip_file = skip_file
        self.logger = logger or logging.getLogger("samacore.robust")
        self.reasons: Dict[str, str] = {}  # name -> first reason seen (all data sets)
        self.where: Dict[str, List[str]] = {}  # name -> data sets it was bad in
        self.per_set: Dict[str, set] = {}  # data set label -> names of its bad items

    @property
    def names(self) -> List[str]:
        return list(self.reasons)

    def record(self, item: BadItem, where: str, total: int) -> None:
        """Note one bad item of the data set ``where`` (``total`` items: under torchrun, this rank's share); raise
        if that set has too many."""
        new = item.name not in self.reasons
        if new:
            self.reasons[item.name] = item.reason
            self.logger.warning("skipping bad item %s (%s): %s", item.name, where, item.reason)
        places = self.where.setdefault(item.name, [])
        if where not in places:
            places.append(where)
            self.write()  # keep the file current: a later crash still leaves the list behind
        bad = self.per_set.setdefault(where, set())
        bad.add(item.name)
        if total > 0 and len(bad) / total > self.max_bad_fraction:
            first = sorted(bad)[:3]
            listed = "; ".join(f"{n}: {self.reasons[n]}" for n in first)
            saved = f"; full list in {self.skip_file}" if self.skip_file else ""
            share = f" (rank {D.rank()}'s share of {D.world_size()})" if D.is_dist() else ""
            raise TooManyBadItems(
                f"{len(bad)} of {total} items of {where}{share} ({100.0 * len(bad) / total:.1f}%) could not be "
                f"loaded, more than max_bad_fraction {self.max_bad_fraction:g}{saved}. First: {listed}"
            )

    def write(self) -> Optional[str]:
        """(Re)write the skip list: one ``name<TAB>reason<TAB>data sets`` line per distinct bad item.

        Under ``torchrun`` every rank sees only its shard: rank 0 writes ``skip_file``, rank ``r`` writes
        ``skip_file`` + ``.rank{r}`` (no two processes write one file).
        """
        if not self.skip_file:
            return None
        path = self.skip_file if D.rank() == 0 else f"{self.skip_file}.rank{D.rank()}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for name, reason in self.reasons.items():
                f.write(f"{name}\t{' '.join(reason.split())}\t{', '.join(self.where.get(name, []))}\n")
        os.replace(tmp, path)
        return path


def _share(loader: Any) -> int:
    """The number of items this process reads from ``loader`` per pass: its sampler's length (under torchrun the
    rank's shard), else the data set's."""
    sampler = getattr(loader, "sampler", None)
    try:
        return len(sampler)  # type: ignore[arg-type]
    except TypeError:
        return len(loader.dataset)


class SkippingLoader:
    """Iterate a ``DataLoader`` over a :class:`SkipBadItems` dataset, yielding good batches only.

    Installs :class:`SkipCollate` on the loader (keeping its collate function inside), records every bad item
    in ``log`` under the label ``where``, and skips a batch whose items were all bad.
    """

    def __init__(self, loader: Any, log: BadItemLog, where: str) -> None:
        # the SkipBadItems itself, or under loaders.ItemSeeded (deterministic: true wraps training sets in it)
        dataset = next((d for d in (loader.dataset, getattr(loader.dataset, "dataset", None))
                        if isinstance(d, SkipBadItems)), None)
        if dataset is None:
            raise TypeError("SkippingLoader needs a DataLoader over a SkipBadItems dataset")
        if not isinstance(loader.collate_fn, SkipCollate):  # loaders built without build_loader(collate_fn=SkipCollate())
            loader.collate_fn = SkipCollate(loader.collate_fn)
        self.items = dataset
        self.loader = loader
        self.log = log
        self.where = where

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, key: str) -> Any:  # sampler, dataset, batch_size, ...
        if key in ("loader", "items"):
            raise AttributeError(key)
        return getattr(self.loader, key)

    def __iter__(self) -> Iterator[Any]:
        dataset = self.items
        dataset.known_bad = {n: self.log.reasons[n] for n in self.log.names}  # workers copy it at start
        total = _share(self.loader)
        for batch, bad in self.loader:
            for item in bad:
                self.log.record(item, self.where, total)
            if batch is not None:
                yield batch
