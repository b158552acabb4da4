"""The one training loop of both trees: VQA training, VQA finetuning (one run per split) and the IQA splits.

A tree describes a run as a :class:`Job`: the model, its training and validation loaders, its step and predict
functions (:mod:`samacore.engine`), its learning-rate schedule, where its checkpoints go and what they store, and
how an epoch is logged. :func:`fit` does the rest the same way for every tree: AdamW with the backbone's learning
rate multiplier, DDP under ``torchrun``, the EMA of the weights (evaluated and saved), a best checkpoint per
validation set whenever SRCC+PLCC improves (:class:`BestCheckpointer`), non-finite losses skipped, the resumable
state saved after every epoch and restored on ``--resume``, ``stop_after_epochs``, and the run's ``curves.png``
redrawn after an epoch at most every :data:`samacore.curves.REDRAW_AFTER_S` seconds and after the last one
(:mod:`samacore.curves`).

Around it: :func:`run_splits` (the split loop of finetuning and the IQA protocol, resumable split by split) and
:func:`calibrate_best` (each saved best model scores its training items once more in test mode; the statistics
go into the checkpoint as ``label_stats``, for calibrated scores, see :mod:`samacore.calibration`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from . import distributed as D
from .calibration import calibration_stats
from .checkpoint import load_checkpoint, load_on_main, load_state_dict_checked, save_checkpoint
from .context import RunContext
from .curves import REDRAW_AFTER_S, update_curves
from .ema import ModelEMA, unwrap
from .engine import BadStepGuard, PredictFn, StepFn, predict, train_one_epoch
from .metrics import BestTracker, evaluate
from .optim import build_optimizer
from .resume import TrainState, bad_log_state, restore_bad_log, RunStopped
from .robust import BadItemLog
from .runlog import RunLogger, get_logger

__all__ = ["BestCheckpointer", "Checkpoints", "Evaluation", "Job", "build_ema", "calibrate_best", "calibrate_checkpoint", "fit",
           "run_splits", "save_epoch_checkpoint"]

log = get_logger("samacore")


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
        """JSON-ready ``{key: {"best_per_metric", "best_epoch_per_metric", "final", "final_epoch", "selected",
        "selected_epoch", "checkpoint"}}``."""
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



# ----------------------------------------------------------------------------------------------- the loop
def build_ema(model: nn.Module, opt: Mapping[str, Any]) -> Optional[ModelEMA]:
    """The EMA of the options: ``ema`` (default true), ``ema_decay`` (0.999), ``ema_warmup`` (default false: the
    original's constant decay); None without ``ema``."""
    if not opt.get("ema", True):
        return None
    return ModelEMA(model, float(opt.get("ema_decay", 0.999)), warmup=bool(opt.get("ema_warmup", False)))


@dataclass
class Evaluation:
    """What the logging hook gets after each validation set of an epoch."""

    epoch: int
    key: str                                 # the validation set
    metrics: Dict[str, float]                # srcc, plcc, krcc, rmse, n
    saved: bool                              # a new best checkpoint was written
    best: BestTracker                        # this set's best so far
    size: int                                # items in the set (``metrics["n"]`` counts the scored ones)
    train: Dict[str, Dict[str, float]]       # this epoch's training stats per training set (train_one_epoch's)


@dataclass
class Checkpoints:
    """What a :class:`Job` saves besides the resumable state."""

    #: where the best (EMA) model of validation set ``key`` goes (with ``save_model``); None: not saved
    best_path: Optional[Callable[[str], str]] = None
    #: where the raw model goes after epoch ``e``; None: not saved
    epoch_path: Optional[Callable[[int], str]] = None
    #: stored beside the weights in the checkpoints of validation set ``key`` (None: the per-epoch checkpoints):
    #: label_stats, format, ..., and ``"sama"`` (:func:`samacore.checkpoint.checkpoint_meta`), which the resumable
    #: state stores too
    extra: Callable[[Optional[str]], Mapping[str, Any]] = lambda key: {}


@dataclass
class Job:
    """One training run of :func:`fit`: a model, its data, its recipe, what it saves and how it is logged."""

    model: nn.Module
    train_loaders: Mapping[str, Any]
    val_loaders: Mapping[str, Any]
    step_fn: StepFn
    predict_fn: PredictFn
    #: the learning-rate multiplier per iteration (``LambdaLR``), from the training loaders' lengths
    schedule: Callable[[List[int]], Callable[[int], float]]
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    #: logging hooks: after each training pass ``(epoch, set key, stats)``, after each evaluation
    log_train: Callable[[int, str, Dict[str, float]], None] = lambda epoch, key, stats: None
    log_eval: Callable[[Evaluation], None] = lambda evaluation: None
    #: where the per-iteration loss and lr go (default: the run's logger)
    logger: Optional[RunLogger] = None
    #: bad items met so far, saved with the state (a resumed run does not read them again)
    bad_log: Optional[BadItemLog] = None
    #: more for the resumable state: ``split`` (the split index, also named in stop messages), the finished
    #: splits' results, ...
    state_extra: Mapping[str, Any] = field(default_factory=dict)
    #: DDP: True skips the probe that freezes parameters the forward never uses, and lets DDP search the graph every
    #: step instead (samacore.distributed.wrap_ddp)
    find_unused_parameters: bool = False

    def where(self, epoch: int) -> str:
        """Where in the run ``epoch`` is, for messages: ``", at split 02 epoch 05"`` for a split, else ``""``."""
        split = self.state_extra.get("split")
        return f", at split {int(split):02d} epoch {epoch:02d}" if split is not None else ""


def fit(opt: Mapping[str, Any], job: Job, device: str, run_logger: RunLogger, ctx: RunContext,
        command: str = "train", more_after: bool = False) -> BestCheckpointer:
    """Train ``job.model`` for ``num_epochs`` and evaluate its EMA after every epoch; returns the best trackers.

    Options used: ``num_epochs``, ``optimizer.{lr, backbone_lr_mult, wd}``, ``ema`` / ``ema_decay`` / ``ema_warmup``,
    ``save_model``. After every epoch the resumable state goes to ``ctx.state_path``; ``ctx.resume``, when set, is
    restored first and training continues after its epoch (it is then consumed). ``more_after``: work follows
    this run (more splits), so ``stop_after_epochs`` may stop after its last epoch too
    (:class:`samacore.resume.RunStopped`).
    """
    num_epochs = int(opt["num_epochs"])
    optim_opt = opt.get("optimizer") or {}
    model = job.model
    optimizer = build_optimizer(model, float(optim_opt.get("lr", 1e-3)), float(optim_opt.get("backbone_lr_mult", 0.1)),
                                float(optim_opt.get("wd", 0.05)))
    lengths = [len(loader) for loader in job.train_loaders.values()]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, job.schedule(lengths))
    if D.is_dist():  # wrap first: DDP broadcasts rank 0's weights, so every rank's EMA starts from the same model
        probe = D.first_batch_probe(job.step_fn, next(iter(job.train_loaders.values())), device, ctx.amp)
        model = D.wrap_ddp(model, probe, find_unused_parameters=job.find_unused_parameters)
    # As the original: the EMA copy is taken after the weights are loaded, and is what gets evaluated. It is kept on
    # every rank (identical, since DDP keeps the weights in sync) for the sharded evaluation.
    ema = build_ema(model, opt)
    best = BestCheckpointer(job.checkpoints.best_path if opt.get("save_model", True) else None)
    guard = BadStepGuard(ctx.max_bad_steps)
    state = TrainState(model, optimizer, scheduler, ema, best, job.train_loaders, run_logger, guard, opt, command)
    start = _resume(state, job, ctx, num_epochs)
    for epoch in range(start, num_epochs):
        train = {}
        for key, loader in job.train_loaders.items():
            train[key] = train_one_epoch(model, loader, job.step_fn, optimizer, scheduler, ema, device, epoch,
                                         job.logger or run_logger, ctx.progress, amp=ctx.amp, guard=guard)
            job.log_train(epoch, key, train[key])
        if job.checkpoints.epoch_path is not None:
            save_epoch_checkpoint(model, job.checkpoints.epoch_path(epoch), **job.checkpoints.extra(None))
        eval_model = ema.module if ema is not None else unwrap(model)
        for key, loader in job.val_loaders.items():
            _, preds, labels = predict(eval_model, loader, job.predict_fn, device, ctx.progress, desc=f"eval {key}",
                                       amp=ctx.amp)
            metrics = evaluate(preds, labels)
            improved = best.update(key, metrics, epoch, model=eval_model, **job.checkpoints.extra(key))
            job.log_eval(Evaluation(epoch, key, metrics, improved and best.path_fn is not None, best.trackers[key],
                                    len(loader.dataset), train))
        if run_logger.enabled:  # rank 0: the picture of the rows logged so far (always after this process's last epoch)
            last = epoch == num_epochs - 1 or ctx.stops_after(ctx.epochs_done + 1)
            update_curves(run_logger.run_dir, 0.0 if last else REDRAW_AFTER_S)
        if ctx.state_path:
            _save_state(state, job, ctx, epoch)
        ctx.epoch_finished(epoch, num_epochs, more_after, where=job.where(epoch))
    return best


def _resume(state: TrainState, job: Job, ctx: RunContext, num_epochs: int) -> int:
    """Restore ``ctx.resume`` (consumed) into the live objects; returns the first epoch to run (0: nothing)."""
    if ctx.resume is None:
        return 0
    resumed, ctx.resume = ctx.resume, None
    start = state.restore(resumed)
    if job.bad_log is not None:
        restore_bad_log(job.bad_log, resumed.get("bad_items"))
    log.info("resumed from %s: epoch %d done, continuing at epoch %d of %d", resumed["_path"], start - 1, start,
             num_epochs)
    return start


def _save_state(state: TrainState, job: Job, ctx: RunContext, epoch: int) -> None:
    """The resumable state after ``epoch`` (with the job's extras, bad items and ``"sama"``) to ``ctx.state_path``."""
    extra = dict(job.state_extra, sama=job.checkpoints.extra(None).get("sama"))
    if job.bad_log is not None:
        extra["bad_items"] = bad_log_state(job.bad_log)
    state.save(ctx.state_path, epoch, on_saved=lambda: ctx.state_saved(epoch, job.where(epoch)), **extra)


# ----------------------------------------------------------------------------------------------- splits
SplitResult = Dict[str, Any]


def run_splits(num_splits: int, ctx: RunContext, run_split: Callable[[int, List[SplitResult]], Optional[SplitResult]],
               results_key: str = "results") -> Tuple[List[SplitResult], Optional[str]]:
    """Run splits ``0 .. num_splits - 1`` (a resumed run: from the split its state was saved in, with the results
    of the splits finished before, which the state holds under ``results_key``). ``run_split(split, results so
    far)`` trains one split and returns its result (None: nothing to record). Returns ``(results, stop
    message)``; the message is None unless ``stop_after_epochs`` stopped the run."""
    results: List[SplitResult] = []
    if ctx.resume is not None:
        results = list(ctx.resume.get(results_key, []))
    for split in range(ctx.first_split(num_splits), num_splits):
        try:
            result = run_split(split, results)
        except RunStopped as e:
            return results, str(e)
        if result is not None:
            results.append(result)
    return results, None


# ----------------------------------------------------------------------------------------------- calibration
def calibrate_checkpoint(path: str, model: nn.Module, loaders: Sequence[Any], predict_fn: PredictFn, device: str,
                         ctx: RunContext, source: str) -> Dict[str, Any]:
    """Score ``loaders`` (the training items, test mode) with the model saved in ``path`` (loaded into ``model``)
    and store :func:`samacore.calibration.calibration_stats` of those scores and labels as the checkpoint's
    ``label_stats``; ``source`` says how the scores were made. Collective under torchrun (scoring is sharded);
    rank 0 rewrites the checkpoint. Returns the statistics."""
    D.barrier()  # rank 0 wrote the checkpoint
    count = sum(len(loader.dataset) for loader in loaders)
    log.info("calibration: scoring the %d training items once more in test mode with the selected model %s, so "
             "its scores can be mapped onto the label scale (label_stats)", count, path)
    ckpt = load_on_main(lambda: load_checkpoint(path))  # written on rank 0's node
    load_state_dict_checked(model, ckpt["state_dict"], what=f"model of {path}")
    model.to(device)
    preds: List[float] = []
    labels: List[float] = []
    for loader in loaders:
        _, p, g = predict(model, loader, predict_fn, device, ctx.progress, desc="calibration", amp=ctx.amp)
        preds += p
        labels += g
    stats = calibration_stats(preds, labels, source=source)
    if D.is_main():
        ckpt["label_stats"] = stats
        save_checkpoint(ckpt, path)
    D.barrier()
    log.info("calibration stored in %s: training labels mean %.4f std %.4f, scores mean %.4f std %.4f (%d items)",
             path, stats["mean"], stats["std"], stats["pred_mean"], stats["pred_std"], stats["n"])
    return stats


def calibrate_best(best: BestCheckpointer, model_fn: Callable[[], nn.Module],
                   loaders_for: Callable[[str], Tuple[Hashable, Callable[[], Sequence[Any]]]], predict_fn: PredictFn,
                   device: str, ctx: RunContext, source: str) -> Dict[str, Dict[str, Any]]:
    """:func:`calibrate_checkpoint` for every saved best checkpoint; ``loaders_for(key) -> (sampling id, a function
    building the test-mode loaders of the training items)``, ``model_fn()`` builds a model to load them into.

    Checkpoints selected at the same epoch with the same sampling get the statistics computed once.
    """
    out: Dict[str, Dict[str, Any]] = {}
    done: Dict[Tuple[int, Hashable], Dict[str, Any]] = {}
    for key, path in best.saved.items():
        sampling, loaders = loaders_for(key)
        cache = (int(best.trackers[key].selected_epoch), sampling)
        if cache in done:
            if D.is_main():
                ckpt = load_checkpoint(path)
                ckpt["label_stats"] = done[cache]
                save_checkpoint(ckpt, path)
            out[key] = done[cache]
        else:
            out[key] = done[cache] = calibrate_checkpoint(path, model_fn(), loaders(), predict_fn, device, ctx, source)
    return out
