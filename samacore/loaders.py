"""Data loaders of the training and evaluation loops, safe under ``torchrun``.

Training shuffles with :class:`TrainSampler` (a permutation drawn from seed + epoch, sharded over ranks), which
needs no state to resume; with ``deterministic: true`` each item is loaded through :class:`ItemSeeded`, so its
random sampling depends only on (seed, epoch, index). Evaluation keeps the data set's order and shards it
contiguously (:class:`ContiguousShardSampler`), so gathering the ranks' results restores that order and counts
every item once. :func:`skipping_loader` adds the skipping of unreadable items (:mod:`samacore.robust`).
Every worker process starts with :func:`worker_started` (the scoring commands' loaders too).
"""
from __future__ import annotations

import os
import random
import signal
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, Type

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from . import distributed as D
from .robust import BadItemLog, SkipBadItems, SkipCollate, SkippingLoader

__all__ = ["ContiguousShardSampler", "ItemSeeded", "TrainSampler", "build_loader", "item_seed", "keep_from_workers",
           "skipping_loader", "worker_started"]


class ContiguousShardSampler(Sampler):
    """Rank ``r`` of ``w`` gets the contiguous block ``[r*n/w, (r+1)*n/w)``, no padding.

    Gathering the per-rank results in rank order then restores the dataset order, and no item is counted twice
    (unlike ``DistributedSampler``, which pads), so evaluation metrics stay exact.
    """

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.start, self.stop = n * rank // world, n * (rank + 1) // world

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class TrainSampler(DistributedSampler):
    """Training order: a permutation drawn from ``seed + epoch`` (call ``set_epoch``), rank ``r`` of ``w`` taking
    positions ``r, r + w, ...`` (padded by repetition to a multiple of ``w``, as ``DistributedSampler``).

    The order is a pure function of (seed, epoch), so a resumed run needs no sampler state, and with per-process
    batch ``b`` the union of the ranks' i-th batches is exactly the i-th batch of a one-process run with batch
    ``w * b`` (see :func:`gather_batch`, which restores the one-process order inside that batch).
    With ``with_epoch`` the sampler yields ``(epoch, index)`` keys for :class:`ItemSeeded`.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, rank: int = 0, world: int = 1, with_epoch: bool = False):
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.with_epoch = with_epoch

    def __iter__(self):
        indices = super().__iter__()
        if self.with_epoch:
            epoch = self.epoch
            return ((epoch, i) for i in indices)
        return indices


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for item ``index`` of ``epoch`` (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(index)]).generate_state(1, np.uint64)[0] >> 1)


class ItemSeeded(Dataset):
    """Deterministic-mode wrapper: item ``(epoch, i)`` is loaded with Python's, NumPy's and torch's global CPU
    generators seeded from :func:`item_seed` ``(seed, epoch, i)``; the previous generator states are put back
    afterwards.

    The random sampling of an item then depends only on (seed, epoch, index): not on the worker that loads it,
    the number of workers or processes, the batch it lands in, or anything drawn before (resume-safe, and a
    torchrun run sees the same inputs as a one-process run). Plain integer keys load without reseeding.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # labels, video_infos, ... of the wrapped dataset
        if name == "dataset":  # not set yet (unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        epoch, index = key
        s = item_seed(self.seed, epoch, index)
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.default_generator.manual_seed(s)  # CPU only: leave the CUDA generators (dropout) alone
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


#: descriptors of this process that its DataLoader workers close first (:func:`keep_from_workers`)
_PARENT_ONLY: Set[int] = set()


def keep_from_workers(fd: int, keep: bool = True) -> None:
    """Have DataLoader workers started from now on close their copy of ``fd`` (``keep=False``: no longer).

    A forked worker gets a copy of every descriptor, close-on-exec or not; one holding an :func:`fcntl.flock` lock
    (a scoring command's ``<output>.lock``) would keep the file locked for as long as the worker lives -- after a
    ``kill -9`` of the command, until the orphan notices (seconds). Closing the copy leaves the parent's lock held.
    """
    (_PARENT_ONLY.add if keep else _PARENT_ONLY.discard)(fd)


def worker_started(worker_id: int) -> None:
    """What every DataLoader worker of this project does first (its ``worker_init_fn``, or part of it).

    SIGTERM is made to end the worker as Ctrl-C does (``KeyboardInterrupt``, which PyTorch's worker loop takes as
    the end, exit status 0). A SIGTERM sent to the whole process group (``kill -TERM -- -PGID``, a job scheduler)
    reaches the workers as well as the command; killed by it, they made the command's loader report "worker
    killed by signal" while it was stopping cleanly. The loader's own shutdown (which may end a worker with
    SIGTERM) still ends them. A command stopped while it was taking a batch from a worker leaves that worker's
    handover of the batch's shared memory cut off: that is not reported either (:func:`_quiet_handover`). Then the
    descriptors :func:`keep_from_workers` names are closed.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.excepthook = _quiet_handover(sys.excepthook)
    for fd in list(_PARENT_ONLY):
        try:
            os.close(fd)
        except OSError:  # (already closed: nothing of the parent's is held)
            pass


def _quiet_handover(report: Callable[..., Any]) -> Callable[..., Any]:
    """A :data:`sys.excepthook` for a worker: a connection error in :mod:`multiprocessing`'s resource sharer (the
    thread that hands the shared memory of a batch to the loading process, and reports its errors through this
    hook) is that process stopping (Ctrl-C, SIGTERM) as it took the batch, and says nothing; anything else goes to
    ``report``."""
    def hook(kind: type, error: BaseException, tb: Any) -> None:
        frames, sharer = tb, False
        while frames is not None:
            sharer = sharer or frames.tb_frame.f_code.co_filename.endswith(
                os.path.join("multiprocessing", "resource_sharer.py"))
            frames = frames.tb_next
        if not (sharer and issubclass(kind, (ConnectionError, EOFError))):
            report(kind, error, tb)

    return hook


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a DataLoader worker from torch's per-worker seed (itself drawn from the loader's
    seeded generator), so worker randomness is reproducible too (after :func:`worker_started`)."""
    worker_started(worker_id)
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def _uses_cuda() -> bool:
    """Whether this process works on a GPU: CUDA started (the commands make their device current before building
    loaders, samacore.distributed.init_distributed). Pinned memory lives in the current device's context, so a
    ``--device cpu`` run on a GPU host must not pin (it would start a stray context on GPU 0)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def build_loader(
    dataset: Dataset,
    opt: Mapping[str, Any],
    train: bool,
    batch_size: Optional[int] = None,
    seed: int = 0,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
) -> DataLoader:
    """DataLoader from the usual options.

    Uses ``train_batch_size``/``train_num_workers`` (or the ``test_`` ones; per process under torchrun), and,
    when present, ``pin_memory`` (default: on when this process works on a GPU), ``persistent_workers`` (default
    off) and ``prefetch_factor`` (only with workers). Training shuffles with :class:`TrainSampler` (seed + epoch,
    sharded over ranks); with ``deterministic: true`` every training item is loaded through :class:`ItemSeeded`.
    Evaluation keeps the order and shards contiguously (:class:`ContiguousShardSampler`).
    The loader's generator (worker seeds) is seeded from ``seed`` and the rank. ``collate_fn``: the batch
    collation (default: torch's ``default_collate``; e.g. :class:`samacore.robust.SkipCollate`).
    """
    phase = "train" if train else "test"
    bs = int(batch_size if batch_size is not None else opt.get(f"{phase}_batch_size", 1))
    workers = int(opt.get(f"{phase}_num_workers", 0))
    g = torch.Generator()
    g.manual_seed(int(seed) * 1000 + D.rank())
    kwargs: Dict[str, Any] = dict(
        batch_size=bs,
        num_workers=workers,
        pin_memory=_uses_cuda() if opt.get("pin_memory") is None else bool(opt["pin_memory"]),  # (empty: automatic)
        drop_last=False,
        generator=g,
        worker_init_fn=_seed_worker,
    )
    if collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    if workers > 0:
        kwargs["persistent_workers"] = bool(opt.get("persistent_workers", False))
        if opt.get("prefetch_factor") is not None:
            kwargs["prefetch_factor"] = int(opt["prefetch_factor"])
    if train:
        deterministic = bool(opt.get("deterministic", False))
        if deterministic:
            dataset = ItemSeeded(dataset, seed)
        kwargs["sampler"] = TrainSampler(dataset, seed, D.rank(), D.world_size(), with_epoch=deterministic)
    elif D.is_dist():
        kwargs["sampler"] = ContiguousShardSampler(len(dataset), D.rank(), D.world_size())
    return DataLoader(dataset, **kwargs)


def skipping_loader(dataset: Dataset, opt: Mapping[str, Any], train: bool, bad_log: BadItemLog, where: str,
                    errors: Tuple[Type[BaseException], ...], name_fn: Optional[Callable[[int], str]] = None,
                    seed: int = 0) -> SkippingLoader:
    """A loader over ``dataset`` (:func:`build_loader`) that skips unreadable items.

    An item raising one of ``errors`` costs that one item: it is logged once with its reason (``name_fn(index)``,
    default the data set's ``paths``), written to the log's skip list under ``where``, not read again in later
    epochs, and the run stops with :class:`samacore.robust.TooManyBadItems` once more than ``max_bad_fraction`` of
    the set is bad.
    """
    wrapped = SkipBadItems(dataset, errors=errors, name_fn=name_fn)
    return SkippingLoader(build_loader(wrapped, opt, train=train, seed=seed, collate_fn=SkipCollate()), bad_log, where)
