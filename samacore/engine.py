"""Tree-agnostic training and evaluation loop pieces shared by the VQA and IQA trainers.

Each tree supplies two small callables and keeps its own data / model specifics:

* ``step_fn(model, batch, device) -> (loss, preds[B], labels[B])`` for one training step (the loss is a scalar
  tensor with a graph; preds/labels are anything ``torch.as_tensor`` accepts, used only for the train SRCC);
* ``predict_fn(model, batch, device) -> (names, preds[B], labels[B])`` for inference (no grad, eval mode).

Everything here is safe under ``torchrun``: only rank 0 writes files and draws progress bars, and predictions
are gathered over ranks so metrics cover the whole set exactly once.

Run safety: :class:`TrainState` saves and restores everything a resumed run needs to continue exactly where an
uninterrupted run would be (model, EMA, optimiser, scheduler, best trackers, logged rows, every RNG);
:func:`set_deterministic` + ``deterministic: true`` make the data randomness a function of (seed, epoch, item)
alone; :class:`BadStepGuard` skips non-finite losses; :func:`autocast` gives optional bf16 mixed precision.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from . import distributed as D
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .ema import unwrap
from .metrics import BestTracker, METRIC_NAMES, compute_metrics
from .runlog import RunLogger, get_logger

StepFn = Callable[[nn.Module, Any, str], Tuple[torch.Tensor, Any, Any]]
PredictFn = Callable[[nn.Module, Any, str], Tuple[Sequence[str], Any, Any]]

log = get_logger("samacore")


# ----------------------------------------------------------------------------------------------- progress / io
def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: Optional[int] = None) -> Iterable:
    """A tqdm bar on rank 0 when ``enabled`` (and tqdm is installed); the bare iterable otherwise."""
    if not enabled or not D.is_main():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a nicety, never a requirement
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _flat(x: Any) -> List[float]:
    """Tensor / array / list of numbers -> flat list of Python floats."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().reshape(-1).cpu().tolist()
    return np.asarray(x, dtype=np.float64).reshape(-1).tolist()


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``SRCC 0.8123  PLCC 0.8011  KRCC 0.6200  RMSE 5.1234`` (NaN shown as nan)."""
    return "  ".join(f"{m.upper()} {float(metrics.get(m, math.nan)):.4f}" for m in METRIC_NAMES)


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


def has_labels(labels: Sequence[float]) -> bool:
    """True when every label is a real score (label-free sets use NaN)."""
    arr = np.asarray(labels, dtype=np.float64)
    return arr.size > 0 and bool(np.isfinite(arr).all())


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


# ----------------------------------------------------------------------------------------------- determinism / precision
AMP_MODES = ("none", "bf16")


def set_deterministic(enabled: bool = True) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms(True, warn_only=True)``) and no cuDNN autotuning.

    Call before the first CUDA operation (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts).
    """
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def amp_mode(value: Any) -> Optional[str]:
    """Normalise the ``amp`` option: ``None``/``false``/``"none"``/``"fp32"`` -> None, ``"bf16"``/``"bfloat16"`` -> "bf16"."""
    if value is None or value is False or str(value).lower() in ("none", "fp32", "false", "off", "no"):
        return None
    if str(value).lower() in ("bf16", "bfloat16"):
        return "bf16"
    from .options import OptionError

    raise OptionError(f"amp: unknown mixed-precision mode {value!r}; allowed: {', '.join(AMP_MODES)}")


def autocast(device: str, amp: Optional[str] = None):
    """``torch.autocast`` in bfloat16 on ``device``'s type when ``amp == "bf16"``; a no-op context otherwise.

    Matmuls and convolutions then run in bf16 (CPU and CUDA); losses should be computed in fp32 inside
    :func:`full_precision`.
    """
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def full_precision(device: str):
    """Leave autocast (e.g. to compute a loss in fp32 from bf16 predictions cast with ``.float()``)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


# ----------------------------------------------------------------------------------------------- data loaders
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


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a DataLoader worker from torch's per-worker seed (itself drawn from the loader's
    seeded generator), so worker randomness is reproducible too."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


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
    when present, ``pin_memory`` (default: on with CUDA), ``persistent_workers`` (default off) and
    ``prefetch_factor`` (only with workers). Training shuffles with :class:`TrainSampler` (seed + epoch, sharded
    over ranks); with ``deterministic: true`` every training item is loaded through :class:`ItemSeeded`.
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
        pin_memory=bool(opt.get("pin_memory", torch.cuda.is_available())),
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


def gather_batch(y_pred: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Under torchrun: every rank's predictions ``[b, ...]`` (with gradient) and labels, as one global batch.

    With equal per-rank batches the rows are interleaved (row ``k*w + r`` = rank r's k-th item), which is the
    order of the same items in a one-process run with batch ``w*b`` (see :class:`TrainSampler`); so batch-level
    losses (PLCC, rank) see the one-process batch. The backward pass sums every rank's gradient with respect
    to the global batch, so after DDP's gradient averaging each parameter gets exactly the one-process
    gradient (up to float summation order). Without torchrun: returns the inputs unchanged.
    """
    if not D.is_dist():
        return y_pred, y
    return _GatherWithGrad.apply(y_pred), _GatherWithGrad.apply(y.detach().to(y_pred.device)).detach()


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        world, rank = D.world_size(), D.rank()
        n = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        sizes_l = [int(s) for s in sizes]
        m = max(sizes_l)
        padded = torch.cat([x, x.new_zeros((m - x.shape[0],) + tuple(x.shape[1:]))]) if x.shape[0] < m else x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.world, ctx.rank, ctx.sizes, ctx.interleave = world, rank, sizes_l, len(set(sizes_l)) == 1
        if ctx.interleave:
            return torch.stack(parts, 1).reshape((m * world,) + tuple(x.shape[1:]))
        return torch.cat([p[:s] for p, s in zip(parts, sizes_l)])  # uneven batches (skipped items): rank order

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # d(sum over ranks of each rank's loss) / d(global batch)
        if ctx.interleave:
            n = ctx.sizes[0]
            return grad.reshape((n, ctx.world) + tuple(grad.shape[1:]))[:, ctx.rank]
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


# ----------------------------------------------------------------------------------------------- loops
class BadStepGuard:
    """Skips training steps whose loss is NaN/inf and stops the run after ``max_bad_steps`` of them in a row.

    The count of consecutive bad steps carries over epoch boundaries (and is saved by :class:`TrainState`).
    Under torchrun the decision is collective, so every rank skips the same steps.
    """

    def __init__(self, max_bad_steps: int = 10) -> None:
        self.max_bad_steps = max(1, int(max_bad_steps))
        self.in_a_row = 0
        self.total = 0

    def check(self, loss: torch.Tensor, epoch: int, iteration: int) -> bool:
        """True when the step may go ahead; False (with a warning) to skip it; raises after too many in a row."""
        finite = torch.isfinite(loss.detach()).all().reshape(1).to(torch.float32)
        if D.is_dist():
            import torch.distributed as dist

            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if bool(finite.item()):
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        value = loss.detach().float().reshape(-1)[0].item()
        if self.in_a_row >= self.max_bad_steps:
            raise FloatingPointError(
                f"training loss was not finite ({value}) for {self.in_a_row} steps in a row (last: epoch {epoch}, "
                f"iteration {iteration}); stopping the run. Lower the learning rate, check the labels for NaN, try "
                f"without amp, or raise max_bad_steps (now {self.max_bad_steps})")
        if D.is_main():
            log.warning("epoch %d iteration %d: loss is %s; skipping this step (%d in a row, stop at %d)", epoch,
                        iteration, value, self.in_a_row, self.max_bad_steps)
        return False


def _every_rank_has_batch(has_batch: bool) -> bool:
    """Under torchrun: True while every rank has a next training batch (one collective per step).

    A loader that skips unreadable items (:class:`samacore.robust.SkippingLoader`) drops a batch whose items were
    all bad, so ranks can run out of batches at different steps; a rank stepping alone would hang in the
    collectives of the step (gathered loss, DDP gradient reduction). Each rank calls this before every step
    with True and once with False when its loader is exhausted, so the epoch ends for all ranks at the first
    rank's last batch (the other ranks' remaining few batches are left out of that epoch). Without torchrun:
    ``has_batch`` as is, no communication.
    """
    if not D.is_dist():
        return has_batch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if has_batch else 0.0], device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _collective_device() -> torch.device:
    """The device collectives use: the current CUDA device under NCCL, the CPU otherwise (gloo)."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    step_fn: StepFn,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    ema: Optional[Any],
    device: str,
    epoch: int,
    run_logger: Optional[RunLogger] = None,
    progress: bool = True,
    amp: Optional[str] = None,
    guard: Optional[BadStepGuard] = None,
) -> Dict[str, float]:
    """One pass over ``loader``: step, optimiser step, per-iteration scheduler step, EMA update.

    ``step_fn`` runs under :func:`autocast` (``amp="bf16"``); it should compute its loss in fp32. A non-finite
    loss skips the optimiser step and EMA update (the scheduler still steps, keeping the schedule aligned with
    the iteration count); ``guard`` (default: a fresh ``BadStepGuard(10)``) raises ``FloatingPointError`` after
    too many in a row. Under torchrun every rank stops at the first rank's last batch (a rank whose loader
    skipped whole batches of unreadable items has fewer), so no rank waits alone in a collective. Returns ``{"epoch", "loss" (mean over good steps), "train_srcc", "lr_first", "lr_last",
    "iters", "skipped", "seconds"}``; the lrs are those of the first (backbone) and last (head) parameter groups
    at the end of the epoch. Per-iteration loss and lr go to TensorBoard under ``train/loss`` and ``train/lr`` at
    the global step ``epoch * len(loader) + i``.
    """
    guard = guard if guard is not None else BadStepGuard()
    model.train()
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    tic = time.time()
    total_loss, iters, skipped = 0.0, 0, 0
    preds: List[float] = []
    labels: List[float] = []
    bar = progress_bar(loader, f"train ep {epoch}", progress, total=len(loader))
    for i, batch in enumerate(bar):
        if not _every_rank_has_batch(True):
            break  # another rank ran out of batches: stop together (see _every_rank_has_batch)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss, y_pred, y = step_fn(model, batch, device)
        if not guard.check(loss, epoch, i):
            skipped += 1
            if scheduler is not None:
                scheduler.step()
            continue
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        value = float(loss.detach())
        total_loss += value
        iters += 1
        preds += _flat(y_pred)
        labels += _flat(y)
        if run_logger is not None:
            step = epoch * len(loader) + i
            run_logger.scalar("train/loss", value, step)
            run_logger.scalar("train/lr", optimizer.param_groups[-1]["lr"], step)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{value:.4f}")
    else:
        _every_rank_has_batch(False)  # this rank is out of batches: tell ranks still waiting for a step
    srcc = math.nan
    if len(preds) > 1 and np.std(preds) > 0 and np.std(labels) > 0:
        srcc = float(stats.spearmanr(labels, preds)[0])
    return {
        "epoch": epoch,
        "loss": total_loss / iters if iters else math.nan,
        "train_srcc": srcc,
        "lr_first": optimizer.param_groups[0]["lr"],
        "lr_last": optimizer.param_groups[-1]["lr"],
        "iters": iters,
        "skipped": skipped,
        "seconds": time.time() - tic,
    }


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    predict_fn: PredictFn,
    device: str,
    progress: bool = True,
    desc: str = "eval",
    amp: Optional[str] = None,
) -> Tuple[List[str], List[float], List[float]]:
    """Run ``predict_fn`` over ``loader`` in eval mode (under :func:`autocast` with ``amp``); returns
    ``(names, preds, labels)`` gathered over ranks in dataset order. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    names: List[str] = []
    preds: List[float] = []
    labels: List[float] = []
    try:
        for batch in progress_bar(loader, desc, progress, total=len(loader)):
            with autocast(device, amp):
                n, p, y = predict_fn(model, batch, device)
            p, y = _flat(p), _flat(y)
            n = [str(x) for x in n]
            if not (len(n) == len(p) == len(y)):
                raise ValueError(f"predict_fn returned {len(n)} names, {len(p)} predictions, {len(y)} labels")
            names += n
            preds += p
            labels += y
    finally:
        model.train(was_training)
    rows = D.all_gather_list(list(zip(names, preds, labels)))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def evaluate(preds: Sequence[float], labels: Sequence[float]) -> Dict[str, float]:
    """Metrics of raw predictions against labels (see :func:`samacore.metrics.compute_metrics`); NaN when unlabelled."""
    if not has_labels(labels):
        return {m: math.nan for m in METRIC_NAMES} | {"n": len(preds)}
    return compute_metrics(preds, labels)


# ----------------------------------------------------------------------------------------------- checkpoints
def model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """State dict of the bare model (no DDP / compile prefixes)."""
    return unwrap(model).state_dict()


def save_epoch_checkpoint(model: nn.Module, path: str, **extra: Any) -> None:
    """Raw per-epoch checkpoint ``{"state_dict": ..., **extra}`` (rank 0 only)."""
    if D.is_main():
        save_checkpoint({"state_dict": model_state(model), **extra}, path)


class BestCheckpointer:
    """Per-validation-set :class:`BestTracker` plus the "save when SRCC+PLCC improves" rule.

    ``update`` records the metrics of one evaluation; when the sum SRCC+PLCC beats the best so far it saves
    ``{"state_dict": model, "validation_results": metrics, "epoch": epoch, **extra}`` to ``path_fn(key)``.
    """

    def __init__(self, path_fn: Optional[Callable[[str], str]] = None) -> None:
        self.path_fn = path_fn
        self.trackers: Dict[str, BestTracker] = {}
        self.saved: Dict[str, str] = {}

    def update(
        self, key: str, metrics: Mapping[str, float], epoch: int, model: Optional[nn.Module] = None, **extra: Any
    ) -> bool:
        tracker = self.trackers.setdefault(key, BestTracker())
        improved = tracker.update(dict(metrics), epoch)
        if improved and model is not None and self.path_fn is not None:
            path = self.path_fn(key)
            if D.is_main():
                results = {k: float(v) for k, v in metrics.items()}
                save_checkpoint(
                    {"state_dict": model_state(model), "validation_results": results, "epoch": epoch, **extra}, path
                )
            self.saved[key] = path
        return improved

    def summary_lines(self) -> List[str]:
        lines: List[str] = []
        for key, tracker in self.trackers.items():
            lines += tracker.summary_lines(key)
            if key in self.saved:
                lines.append(f"[{key}] selected checkpoint file: {self.saved[key]}")
        return lines

    def summary(self) -> Dict[str, Any]:
        """JSON-ready ``{key: {"best", "best_epoch", "final", "final_epoch", "selected", "selected_epoch", "checkpoint"}}``."""
        out: Dict[str, Any] = {}
        for key, t in self.trackers.items():
            out[key] = {
                "best_per_metric": dict(t.best),
                "best_epoch_per_metric": dict(t.best_epoch),
                "final": dict(t.last),
                "final_epoch": t.last_epoch,
                "selected": dict(t.selected),
                "selected_epoch": t.selected_epoch,
                "checkpoint": self.saved.get(key),
            }
        return out


# ----------------------------------------------------------------------------------------------- resume
RESUME_FILE = "last.pth"
RESUME_FORMAT = "sama-resume-1"
# Options that may differ between a run and its resumption without changing the results.
RESUME_HARMLESS_KEYS = ("progress", "device", "stop_after_epochs", "train_num_workers", "test_num_workers",
                        "pin_memory", "persistent_workers", "prefetch_factor", "run_dir", "save_dir")


class RunStopped(Exception):
    """Raised after the resumable state was saved, when the run was asked to stop early (``stop_after_epochs``)."""


def get_rng_state(generators: Optional[Mapping[str, torch.Generator]] = None) -> Dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA, when in use) global generator states plus named ``generators``, as
    tensors and plain numbers (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": torch.tensor(internal, dtype=torch.int64), "python_version": int(version), "python_gauss": gauss,
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(cached),
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any], generators: Optional[Mapping[str, torch.Generator]] = None) -> None:
    """Restore what :func:`get_rng_state` captured (generators matched by name; unknown names ignored)."""
    random.setstate((int(state["python_version"]), tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]),
                         int(state["numpy_has_gauss"]), float(state["numpy_gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, g in (generators or {}).items():
        if name in state.get("generators", {}):
            g.set_state(state["generators"][name].cpu())


def _loader_generator(loader: Any) -> Optional[torch.Generator]:
    """The ``generator`` of a DataLoader, also through wrappers that keep it as ``.loader``."""
    for _ in range(4):
        if isinstance(loader, DataLoader):
            return loader.generator
        loader = getattr(loader, "loader", None)
    return None


def _plain_options(opt: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in opt.items() if not str(k).startswith("_")}


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def options_diff(saved: Mapping[str, Any], current: Mapping[str, Any],
                 ignore: Sequence[str] = RESUME_HARMLESS_KEYS) -> List[str]:
    """``key.path: old -> new`` for every option that differs (nested keys dotted; ``_`` keys and ``ignore``d
    top-level keys skipped)."""
    a = _flatten({k: v for k, v in _plain_options(saved).items() if k not in ignore})
    b = _flatten({k: v for k, v in _plain_options(current).items() if k not in ignore})
    missing = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if old != new:
            fmt = lambda v: "(absent)" if v is missing else repr(v)
            lines.append(f"{key}: {fmt(old)} -> {fmt(new)}")
    return lines


def resume_path(run_or_checkpoint: str) -> str:
    """``run_or_checkpoint`` if it is a file, else ``{folder}/last.pth``; a clear error when there is none."""
    p = os.path.abspath(os.path.expanduser(str(run_or_checkpoint)))
    if os.path.isdir(p):
        f = os.path.join(p, RESUME_FILE)
        if not os.path.isfile(f):
            raise CheckpointError(f"cannot resume from run folder {p}: it has no {RESUME_FILE} (a run saves it at the "
                                  "end of every epoch; pass the folder of a run that finished at least one epoch, "
                                  "or a resumable checkpoint file)")
        return f
    if not os.path.exists(p):
        raise CheckpointError(f"cannot resume: {p} is neither a run folder nor a checkpoint file")
    return p


def load_resume(run_or_checkpoint: str, opt: Optional[Mapping[str, Any]] = None,
                command: Optional[str] = None) -> Dict[str, Any]:
    """Read a resumable state (run folder or ``last.pth``) and report how its options differ from ``opt``.

    Stale temporary files of an interrupted save (``.tmp-*.pth``) beside it are removed. Raises
    :class:`CheckpointError` for files that are not resumable states (e.g. a best-model checkpoint) or that were
    written by another ``command``.
    """
    path = resume_path(run_or_checkpoint)
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or state.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a resumable training state (those are the {RESUME_FILE} files in "
                              "run folders; model checkpoints such as *_s_dev_v0.0.pth hold weights only)")
    if command is not None and state.get("command") not in (None, command):
        raise CheckpointError(f"{path} was saved by the {state.get('command')} command; it cannot resume {command}")
    if opt is not None and state.get("options"):
        diff = options_diff(yaml.safe_load(state["options"]), opt)
        if diff and D.is_main():
            log.warning("resuming from %s with options that differ from the run's (results will not match an "
                        "uninterrupted run):\n  %s", path, "\n  ".join(diff))
    if D.is_main():
        folder = os.path.dirname(path)
        for f in os.listdir(folder):
            if f.startswith(".tmp-") and f.endswith(".pth"):
                log.warning("removing %s (left by a save that was interrupted)", os.path.join(folder, f))
                os.remove(os.path.join(folder, f))
    state = dict(state)
    state["_path"] = path
    return state


class TrainState:
    """Everything a resumed run must restore, saved atomically at the end of each epoch.

    Holds references to the live objects; :meth:`save` writes ``{"format", "command", "epoch", "model", "ema",
    "optimizer", "scheduler", "best", "best_saved", "log_rows", "bad_steps", "rng" (per rank), "world_size",
    "options" (YAML), **extra}`` and :meth:`restore` puts it back and returns the epoch to start from. Under
    torchrun both are collective (every rank calls them); rank 0 writes the file, each rank restores its own RNGs.

    Typical use in a trainer::

        state = TrainState(model, optimizer, scheduler, ema, best, loaders, run_logger, guard, opt, "train")
        start = state.restore(load_resume(args.resume, opt, "train")) if args.resume else 0
        for epoch in range(start, num_epochs):
            ...train, evaluate, best.update(...)...
            state.save(os.path.join(run_dir, RESUME_FILE), epoch)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[Any] = None,
        ema: Optional[Any] = None,
        best: Optional[BestCheckpointer] = None,
        loaders: Optional[Mapping[str, Any]] = None,
        run_logger: Optional[RunLogger] = None,
        guard: Optional[BadStepGuard] = None,
        opt: Optional[Mapping[str, Any]] = None,
        command: str = "train",
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.ema = model, optimizer, scheduler, ema
        self.best, self.run_logger, self.guard, self.opt, self.command = best, run_logger, guard, opt, command
        self.loaders = dict(loaders or {})

    def _generators(self) -> Dict[str, torch.Generator]:
        gens = {k: _loader_generator(ld) for k, ld in self.loaders.items()}
        return {k: g for k, g in gens.items() if g is not None}

    def state_dict(self, epoch: int, **extra: Any) -> Dict[str, Any]:
        """The resumable state after ``epoch`` (collective under torchrun: gathers every rank's RNG states)."""
        rng = D.all_gather_list([get_rng_state(self._generators())])
        state: Dict[str, Any] = {
            "format": RESUME_FORMAT,
            "command": self.command,
            "epoch": int(epoch),
            "world_size": D.world_size(),
            "model": model_state(self.model),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "best": {k: t.state_dict() for k, t in self.best.trackers.items()} if self.best is not None else {},
            "best_saved": dict(self.best.saved) if self.best is not None else {},
            "log_rows": [dict(r) for r in self.run_logger.rows] if self.run_logger is not None else [],
            "bad_steps": self.guard.in_a_row if self.guard is not None else 0,
            "rng": rng,
            "options": yaml.safe_dump(_plain_options(self.opt), sort_keys=False) if self.opt is not None else "",
        }
        state.update(extra)
        return state

    def save(self, path: str, epoch: int, **extra: Any) -> None:
        """Atomically write :meth:`state_dict` to ``path`` (rank 0); every rank must call it."""
        state = self.state_dict(epoch, **extra)
        if D.is_main():
            save_checkpoint(state, path)
        D.barrier()

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load ``state`` into the live objects; returns the first epoch still to run (``state["epoch"] + 1``)."""
        from .checkpoint import load_state_dict_checked

        load_state_dict_checked(unwrap(self.model), state["model"], what="resumed model")
        if self.ema is not None:
            if state.get("ema") is None:
                raise CheckpointError("the resumed state has no EMA weights but this run uses ema: true")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.best is not None:
            for key, tstate in state.get("best", {}).items():
                self.best.trackers.setdefault(key, BestTracker()).load_state_dict(dict(tstate))
            self.best.saved.update(state.get("best_saved", {}))
        if self.guard is not None:
            self.guard.in_a_row = int(state.get("bad_steps", 0))
        if self.run_logger is not None:
            restore_log_rows(self.run_logger, state.get("log_rows", []))
        rngs = state.get("rng") or []
        if int(state.get("world_size", 1)) == D.world_size() and len(rngs) == D.world_size():
            set_rng_state(rngs[D.rank()], self._generators())
        else:
            seed = int((self.opt or {}).get("seed", 42)) + 1000 * (int(state["epoch"]) + 1) + D.rank()
            if D.is_main():
                log.warning("the resumed state was saved by %s processes, this run has %d: random generators are "
                            "re-seeded (%d + rank), so results will differ from an uninterrupted run",
                            state.get("world_size"), D.world_size(), seed - D.rank())
            from .utils import seed_everything

            seed_everything(seed)
        return int(state["epoch"]) + 1


def restore_log_rows(run_logger: RunLogger, rows: Sequence[Mapping[str, Any]]) -> None:
    """Make ``metrics.csv`` / ``metrics.jsonl`` hold exactly ``rows`` (those logged before the resumed state was
    saved; rows of an epoch that was interrupted are dropped, it runs again)."""
    if not run_logger.enabled:
        return
    for name in ("metrics.jsonl", "metrics.csv"):
        path = os.path.join(run_logger.run_dir, name)
        if os.path.exists(path):
            os.remove(path)
    run_logger.rows = []
    for r in rows:
        run_logger.row(dict(r))
