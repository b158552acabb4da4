"""The steps of the training and evaluation loop, shared by both trees (the loop itself: :mod:`samacore.trainer`).

Each tree supplies two small callables and keeps its own data / model specifics:

* ``step_fn(model, batch, device) -> (loss, preds[B], labels[B])`` for one training step (the loss is a scalar
  tensor with a graph; preds/labels are anything ``torch.as_tensor`` accepts, used only for the train SRCC);
* ``predict_fn(model, batch, device) -> (names, preds[B], labels[B])`` for inference (no grad, eval mode).

Everything here is safe under ``torchrun``: only rank 0 draws progress bars, predictions are gathered over ranks
so metrics cover the whole set exactly once, and :func:`gather_batch` lets a batch-level loss see the global
batch. :class:`BadStepGuard` skips non-finite losses.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed as D
from .precision import autocast
from .runlog import RunLogger, get_logger

__all__ = ["BadStepGuard", "PredictFn", "StepFn", "gather_batch", "predict", "progress_bar", "train_one_epoch"]

StepFn = Callable[[nn.Module, Any, str], Tuple[torch.Tensor, Any, Any]]
PredictFn = Callable[[nn.Module, Any, str], Tuple[Sequence[str], Any, Any]]

log = get_logger("samacore")


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



# ----------------------------------------------------------------------------------------------- global batch
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


class TrainingDiverged(FloatingPointError):
    """The training loss was not finite for ``max_bad_steps`` steps in a row: the run stops with one line saying
    what to change (learning rate, labels, amp), not a traceback."""


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
        finite, _, value = _sync_step(loss, True)
        return self.judge(finite, value, epoch, iteration)

    def judge(self, finite: bool, value: float, epoch: int, iteration: int) -> bool:
        """:meth:`check` for a step whose finiteness (over all ranks) and loss ``value`` are known already."""
        if finite:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.max_bad_steps:
            raise TrainingDiverged(
                f"training loss was not finite ({value}) for {self.in_a_row} steps in a row (last: epoch {epoch}, "
                f"iteration {iteration}); stopping the run. Lower the learning rate, check the labels for NaN, try "
                f"without amp, or raise max_bad_steps (now {self.max_bad_steps})")
        if D.is_main():
            log.warning("epoch %d iteration %d: loss is %s; skipping this step (%d in a row, stop at %d)", epoch,
                        iteration, value, self.in_a_row, self.max_bad_steps)
        return False


def _sync_step(loss: torch.Tensor, has_next: bool) -> Tuple[bool, bool, float]:
    """The one wait of a training step: ``(loss finite on every rank, every rank has a next batch, this rank's
    loss)``, read back from the device in a single transfer after (under torchrun) one all-reduce of both flags.

    Carrying "has a next batch" here ends the epoch for all ranks at the first rank's last batch (a loader that
    skips unreadable items, :class:`samacore.robust.SkippingLoader`, may give the ranks different numbers of
    batches; a rank stepping alone would hang in the step's collectives).
    """
    value = loss.detach().float().reshape(-1)[:1]
    flags = torch.stack([torch.isfinite(loss.detach()).all().float(), value.new_tensor(float(has_next))])
    if D.is_dist():
        import torch.distributed as dist

        flags = flags.to(D.collective_device())
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    finite, more, number = torch.cat([flags.to(value.device), value]).tolist()
    return bool(finite), bool(more), number


def _every_rank_has_batch(has_batch: bool) -> bool:
    """Under torchrun: True when every rank has a first batch (once per epoch; later steps learn it from
    :func:`_sync_step`). Without torchrun: ``has_batch`` as is, no communication."""
    if not D.is_dist():
        return has_batch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if has_batch else 0.0], device=D.collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class _EpochTotals:
    """The good steps' losses (Python floats, as read by :func:`_sync_step`) and their predictions and labels,
    kept where they are (on the device) and read back once, at the end of the epoch."""

    def __init__(self) -> None:
        self.loss, self.iters, self.skipped = 0.0, 0, 0
        self.preds: List[Any] = []
        self.labels: List[Any] = []

    def add(self, value: float, y_pred: Any, y: Any) -> None:
        self.loss += value
        self.iters += 1
        self.preds.append(y_pred.detach() if isinstance(y_pred, torch.Tensor) else y_pred)
        self.labels.append(y.detach() if isinstance(y, torch.Tensor) else y)

    def summary(self, epoch: int, optimizer: torch.optim.Optimizer, tic: float) -> Dict[str, float]:
        """What :func:`train_one_epoch` returns."""
        return {
            "epoch": epoch,
            "loss": self.loss / self.iters if self.iters else math.nan,
            "train_srcc": self.train_srcc(),
            "lr_first": optimizer.param_groups[0]["lr"],
            "lr_last": optimizer.param_groups[-1]["lr"],
            "iters": self.iters,
            "skipped": self.skipped,
            "seconds": time.time() - tic,
        }

    def train_srcc(self) -> float:
        preds, labels = _flat_all(self.preds), _flat_all(self.labels)
        if len(preds) > 1 and np.std(preds) > 0 and np.std(labels) > 0:
            from scipy import stats  # imported here: scoring never needs it (a second of start-up)

            return float(stats.spearmanr(labels, preds)[0])
        return math.nan


def _flat_all(parts: List[Any]) -> List[float]:
    """:func:`_flat` of every part, concatenated; tensors on one device are read back in one transfer."""
    tensors = [p for p in parts if isinstance(p, torch.Tensor)]
    if parts and len(tensors) == len(parts) and len({t.device for t in tensors}) == 1:
        return torch.cat([t.float().reshape(-1) for t in tensors]).cpu().tolist()
    return [x for p in parts for x in _flat(p)]


def _step_count(loader: Any, epoch: int, i: int) -> int:
    return epoch * len(loader) + i


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
    skipped whole batches of unreadable items has fewer), so no rank waits alone in a collective, and a rank
    that fails ends the others (:func:`samacore.distributed.failing_together`). Each step waits for the device
    once (:func:`_sync_step`); predictions stay on the device until the epoch ends. Returns ``{"epoch", "loss"
    (mean over good steps), "train_srcc", "lr_first", "lr_last", "iters", "skipped", "seconds"}``; the lrs are
    those of the first (backbone) and last (head) parameter groups at the end of the epoch. Per-iteration loss
    and lr go to TensorBoard under ``train/loss`` and ``train/lr`` at the global step ``epoch * len(loader) + i``.
    """
    guard = guard if guard is not None else BadStepGuard()
    model.train()
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    tic = time.time()
    totals = _EpochTotals()
    bar = progress_bar(loader, f"train ep {epoch}", progress, total=len(loader))
    with D.failing_together():
        batches = iter(bar)
        batch = next(batches, None)
        more, i = _every_rank_has_batch(batch is not None), 0
        while more:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):
                loss, y_pred, y = step_fn(model, batch, device)
            # the next batch is fetched before the step's one sync, which then also says whether every rank has
            # one; nothing random runs between the forward pass and this fetch, so the draws keep their order
            batch = next(batches, None)
            finite, more, value = _sync_step(loss, batch is not None)
            if guard.judge(finite, value, epoch, i):
                _optimise(loss, optimizer, scheduler, ema, model)
                totals.add(value, y_pred, y)
                _log_step(run_logger, bar, optimizer, value, _step_count(loader, epoch, i))
            else:
                totals.skipped += 1
                if scheduler is not None:
                    scheduler.step()
            i += 1
    return totals.summary(epoch, optimizer, tic)


def _optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: Optional[Any], ema: Optional[Any],
              model: nn.Module) -> None:
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if ema is not None:
        ema.update(model)


def _log_step(run_logger: Optional[RunLogger], bar: Any, optimizer: torch.optim.Optimizer, value: float,
              step: int) -> None:
    if run_logger is not None:
        run_logger.scalar("train/loss", value, step)
        run_logger.scalar("train/lr", optimizer.param_groups[-1]["lr"], step)
    if hasattr(bar, "set_postfix"):
        bar.set_postfix(loss=f"{value:.4f}")


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
    with D.failing_together():
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
