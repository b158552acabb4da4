"""Command-line entry points of the VQA tree: train (LSVQ), finetune (splits of a small set) and test.

The recipes follow SAMA / FAST-VQA: AdamW with backbone lr x0.1, per-iteration warm-up + cosine,
``plcc_loss + 0.3 * rank_loss`` on the temporally summed score map (:mod:`samavqa.recipe`), EMA of the parameters evaluated
every epoch, and checkpoints named as the original names them. Option files keep the original YAML schema.

Runs write ``runs/{name}/`` (options.yml, metrics.csv/jsonl, TensorBoard, summary.json, and ``last.pth``, the
resumable state saved at the end of every epoch: ``--resume runs/{name}``); checkpoints go to
``pretrained_weights/`` (option ``save_dir``), both relative to the working directory.

Unreadable videos (corrupt, truncated, not a video) do not stop a run: each is skipped, logged once with its
reason and listed in ``runs/{name}/skipped.txt`` (``name<TAB>reason<TAB>data sets``); more than
``max_bad_fraction`` (default 0.05) of one data set stops the run. Validation metrics then cover the readable
videos (``n`` in the log and metrics.csv); ``test`` writes a row with an empty ``pred`` and the reason in its
``error`` column for each unreadable video, and computes the metrics over the others.

Each selected (best) checkpoint stores calibration statistics in ``label_stats``
(:func:`samacore.calibration.calibration_stats`, used by ``VQA/vqa.py`` for its ``calibrated`` column): after
training, the saved model scores the training videos once more in test mode, with the sampling of the
validation set it was selected on (that set's ``sample_types``: test-time offsets and its ``num_clips``), which
is the sampling ``vqa.py`` uses when the run's first validation set is the one. Cost: one test-mode pass over
the training set per selected checkpoint (checkpoints selected at the same epoch with the same sampling share
it); about 5% of a 30-epoch LSVQ training for one validation set with 4 test clips.

Multi-GPU / multi-node: launch the same command with ``torchrun --nproc_per_node=N VQA/demo_train.py -o ...``.
Batch sizes in the options are *per process* (global batch = N x train_batch_size); the batch-level losses see
the global batch (predictions are gathered), evaluation is sharded and gathered back in dataset order, and only
rank 0 writes files. A rank whose loader skipped a whole batch of unreadable videos runs out of batches one
step early; every rank then ends the epoch there (:func:`samacore.engine.train_one_epoch`), so none waits alone
in a collective. Each rank lists the bad videos of its own shard (rank r > 0: ``skipped.txt.rank{r}``).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from samacore import distributed as D
from samacore import engine, runs
from samacore.calibration import calibration_stats
from samacore.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked, save_checkpoint
from samacore.ema import ModelEMA, unwrap
from samacore.metrics import METRIC_NAMES, aggregate
from samacore.optim import build_optimizer
from samacore.options import OptionError
from samacore.robust import BadItemLog, TooManyBadItems
from samacore.runlog import get_logger
from samacore.schedules import warmup_cosine
from samacore.utils import seed_everything

from . import datasets as vqa_datasets
from .labels import LabelError, read_label_file
from .models.checkpoints import detect_format, load_vqa_weights
from .recipe import build_model, make_predict_fn, make_step_fn
from .schema import load_vqa_options, option_path

log = get_logger("samavqa")


# ----------------------------------------------------------------------------------------------- model
def load_weights(model: nn.Module, opt: Mapping[str, Any], what: str, full_model: bool = False) -> None:
    """Load ``load_path`` (format recognised by content) into ``model``; nothing to do without ``load_path``.

    ``full_model`` (finetune / test): the file must hold a complete VQA model (backbone *and* head), as the
    original's strict load demands; a backbone-only file (K400) is refused unless ``allow_partial_load``.
    """
    path = opt.get("load_path")
    if not path:
        log.info("no load_path: %s starts from random initialisation", what)
        return
    path = option_path(path)
    allow_partial = bool(opt.get("allow_partial_load", False))
    obj = load_checkpoint(path)
    fmt = detect_format(obj)
    if full_model and fmt in ("mmaction_k400", "bare_backbone") and not allow_partial:
        raise CheckpointError(
            f"{path} holds backbone weights only ({fmt}); this command needs a complete SAMA / FAST-VQA model "
            "('fragments_backbone.*' and 'vqa_head.*'). Set allow_partial_load: true to start the head from scratch.")
    kwargs = {"allow_partial": allow_partial}
    if "init_fragment_bias_from_relative" in opt:  # K400 init: FAST-VQA's copy of the relative tables
        kwargs["init_fragment_bias_from_relative"] = bool(opt["init_fragment_bias_from_relative"])
    report = load_vqa_weights(unwrap(model), obj, **kwargs)
    log.info("%s: loaded %s (%s)", what, path, report)


def _branches(model: nn.Module) -> List[str]:
    return list(unwrap(model).branches)


# ----------------------------------------------------------------------------------------------- bad videos
def _loader(ds, opt: Mapping[str, Any], train: bool, bad: BadItemLog, where: str, seed: int = 0):
    """A loader over ``ds`` that skips (and lists) unreadable videos (:func:`samavqa.datasets.skipping_loader`)."""
    return vqa_datasets.skipping_loader(ds, opt, train, bad, where=where, seed=seed)


def _skip_note(bad: BadItemLog) -> Dict[str, Any]:
    """Summary entry for the skipped videos (empty when none)."""
    return {"count": len(bad.reasons), "list": bad.skip_file} if bad.reasons else {}


def _scored_rows(ds, names: Sequence[str], preds: Sequence[float], labels: Sequence[float], bad: BadItemLog):
    """``(names, preds, labels, errors)`` over every video of ``ds`` in its order: scored videos as predicted,
    unreadable ones with pred None and the reason (gathered over ranks) in ``errors``."""
    scored = {n: (p, g) for n, p, g in zip(names, preds, labels)}
    reasons = dict(D.all_gather_list(list(bad.reasons.items())))
    out: Tuple[List[str], List[Optional[float]], List[float], List[str]] = ([], [], [], [])
    for info in ds.video_infos:
        name = info["fileid"]
        if name in scored:
            p, g, err = scored[name][0], scored[name][1], ""
        else:
            p, g, err = None, info["label"], reasons.get(info["filename"], "not scored")
        for col, v in zip(out, (name, p, g, err)):
            col.append(v)
    return out


# ----------------------------------------------------------------------------------------------- calibration
def calibrate_checkpoint(path: str, opt: Mapping[str, Any], sets: Sequence[Any], device: str, bad: BadItemLog,
                         ctx: "RunContext", where: str) -> Dict[str, Any]:
    """Score ``sets`` (the training videos, as test-mode datasets) with the model saved in ``path`` and store
    :func:`samacore.calibration.calibration_stats` of those scores and labels as the checkpoint's ``label_stats``.

    Collective under torchrun (scoring is sharded); rank 0 rewrites the checkpoint. Returns the statistics.
    """
    D.barrier()  # rank 0 wrote the checkpoint
    ckpt = load_checkpoint(path)
    model = build_model(opt, device)
    load_state_dict_checked(model, ckpt["state_dict"], what=f"model of {path}")
    predict_fn = make_predict_fn(_branches(model))
    preds: List[float] = []
    labels: List[float] = []
    for i, ds in enumerate(sets):
        loader = _loader(ds, opt, False, bad, where if len(sets) == 1 else f"{where} {i}")
        _, p, g = engine.predict(model, loader, predict_fn, device, ctx.progress, desc="calibration", amp=ctx.amp)
        preds += p
        labels += g
    stats = calibration_stats(preds, labels, source="test-mode scores of the training videos with the sampling of "
                                                    "the validation set the checkpoint was selected on")
    if D.is_main():
        ckpt["label_stats"] = stats
        save_checkpoint(ckpt, path)
    D.barrier()
    log.info("calibration stored in %s: training labels mean %.4f std %.4f, scores mean %.4f std %.4f (%d videos)",
             path, stats["mean"], stats["std"], stats["pred_mean"], stats["pred_std"], stats["n"])
    return stats


def _calibrate_best(best: engine.BestCheckpointer, opt: Mapping[str, Any], sets_for: Any, device: str,
                    bad: BadItemLog, ctx: "RunContext") -> Dict[str, Dict[str, Any]]:
    """Calibrate every saved best checkpoint; ``sets_for(key) -> (sampling id, [test-mode training sets])``.

    Checkpoints selected at the same epoch with the same sampling get the statistics computed once.
    """
    out: Dict[str, Dict[str, Any]] = {}
    done: Dict[Tuple[int, str], Dict[str, Any]] = {}
    for key, path in best.saved.items():
        sampling, sets = sets_for(key)
        cache = (int(best.trackers[key].selected_epoch), sampling)
        if cache in done:
            if D.is_main():
                ckpt = load_checkpoint(path)
                ckpt["label_stats"] = done[cache]
                save_checkpoint(ckpt, path)
            out[key] = done[cache]
        else:
            out[key] = done[cache] = calibrate_checkpoint(path, opt, sets, device, bad, ctx,
                                                          f"training videos (calibration of {key})")
    return out


RunContext = runs.RunContext  # the loop settings; ``resume``: a loaded state for the next fit() to continue from


def fit(
    opt: Mapping[str, Any],
    model: nn.Module,
    train_loaders: Mapping[str, Any],
    val_loaders: Mapping[str, Any],
    device: str,
    run_logger,
    label_stats: Mapping[str, float],
    ctx: RunContext,
    ckpt_tag: str = "",
    save_epochs: bool = True,
    row_extra: Optional[Mapping[str, Any]] = None,
    state_extra: Optional[Mapping[str, Any]] = None,
    command: str = "train",
    more_after: bool = False,
) -> engine.BestCheckpointer:
    """The SAMA training loop over ``num_epochs``; returns the per-validation-set best trackers.

    After every epoch the resumable state (with ``state_extra``) goes to ``ctx.state_path``; ``ctx.resume``, when
    set, is restored first and training continues after its epoch. ``more_after``: work follows this fit (more
    finetune splits), so ``stop_after_epochs`` may stop after its last epoch too.
    """
    name = opt["name"]
    save_dir = os.path.abspath(str(opt.get("save_dir", "pretrained_weights")))  # outputs: relative to the cwd
    num_epochs = int(opt["num_epochs"])
    optim_opt = opt.get("optimizer") or {}
    optimizer = build_optimizer(model, float(optim_opt.get("lr", 1e-3)), float(optim_opt.get("backbone_lr_mult", 0.1)),
                                float(optim_opt.get("wd", 0.05)))
    # As the original: warm-up counts every train loader, the cosine horizon uses the last loader's length.
    last_len = len(list(train_loaders.values())[-1])
    warmup = sum(int(float(opt.get("warmup_epochs", 0)) * len(ld)) for ld in train_loaders.values())
    max_iter = int((num_epochs + int(opt.get("l_num_epochs", 0))) * last_len)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, max_iter))
    if D.is_dist():  # wraps first: DDP broadcasts rank 0's weights, so every rank's EMA starts from the same model
        model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    # The EMA is kept on every rank (identical, since DDP keeps the weights in sync) for the sharded evaluation.
    ema = ModelEMA(model, float(opt.get("ema_decay", 0.999))) if opt.get("ema", True) else None
    branches = _branches(model)
    step_fn, predict_fn = make_step_fn(branches), make_predict_fn(branches)
    best = engine.BestCheckpointer(
        (lambda key: os.path.join(save_dir, f"{name}{ckpt_tag}_{key}_s_dev_v0.0.pth")) if opt.get("save_model", True)
        else None)
    guard = engine.BadStepGuard(ctx.max_bad_steps)
    state = engine.TrainState(model, optimizer, scheduler, ema, best, train_loaders, run_logger, guard, opt, command)
    start = 0
    if ctx.resume is not None:
        start = state.restore(ctx.resume)
        log.info("resumed from %s: epoch %d done, continuing at epoch %d of %d", ctx.resume["_path"], start - 1,
                 start, num_epochs)
        ctx.resume = None
    for epoch in range(start, num_epochs):
        for key, loader in train_loaders.items():
            stats = engine.train_one_epoch(model, loader, step_fn, optimizer, scheduler, ema, device, epoch,
                                           run_logger, ctx.progress, amp=ctx.amp, guard=guard)
            log.info("epoch %02d [%s] loss %.4f  train SRCC %.4f  backbone lr %.2e  head lr %.2e  (%.0fs)%s", epoch,
                     key, stats["loss"], stats["train_srcc"], stats["lr_first"], stats["lr_last"], stats["seconds"],
                     f"  {stats['skipped']} non-finite steps skipped" if stats["skipped"] else "")
            run_logger.scalar("train/srcc", stats["train_srcc"], epoch)
            run_logger.row({**(row_extra or {}), "epoch": epoch, "set": key, "loss": stats["loss"],
                            "srcc": stats["train_srcc"], "lr_backbone": stats["lr_first"], "lr_head": stats["lr_last"]})
        if save_epochs:
            engine.save_epoch_checkpoint(model, os.path.join(save_dir, f"{name}_Epoch_{epoch:02d}.pth"),
                                         label_stats=dict(label_stats))
        eval_model = ema.module if ema is not None else unwrap(model)
        for key, loader in val_loaders.items():
            names, preds, labels = engine.predict(eval_model, loader, predict_fn, device, ctx.progress,
                                                  desc=f"eval {key}", amp=ctx.amp)
            metrics = engine.evaluate(preds, labels)
            improved = best.update(key, metrics, epoch, model=eval_model, label_stats=dict(label_stats))
            tracker = best.trackers[key]
            total = len(loader.dataset)
            log.info("epoch %02d [%s] %s  (n %d%s)%s | best so far (per metric): SRCC %.4f  PLCC %.4f", epoch, key,
                     engine.format_metrics(metrics), metrics["n"],
                     f" of {total}: unreadable videos left out" if metrics["n"] < total else "",
                     "  (saved)" if improved and best.path_fn else "", tracker.best["srcc"], tracker.best["plcc"])
            for m in METRIC_NAMES:
                run_logger.scalar(f"val_{key}/{m}", metrics[m], epoch)
            run_logger.row({**(row_extra or {}), "epoch": epoch, "set": key,
                            **{m: metrics[m] for m in METRIC_NAMES}, "n": metrics["n"]})
        if ctx.state_path:
            state.save(ctx.state_path, epoch, **dict(state_extra or {}))
        ctx.epoch_finished(epoch, num_epochs, more_after)
    return best


def _setup(argv, command: str, default_opt: str, description: str):
    """Parse the command line, load and check the whole option file, set up determinism / torchrun / seeds."""
    p = runs.command_parser(description, default_opt, "option file (looked up in the working directory, then VQA/)",
                            command == "test",
                            "predictions CSV (name,pred,gt[,set],error); default runs/{name}/predictions.csv")
    args = p.parse_args(argv)
    opt = load_vqa_options(args.opt, command)
    device = runs.apply_command_line(opt, args, log)
    seed_everything(int(opt.get("seed", 42)) + D.rank())
    log.info("options %s, device %s, sampling %s%s%s", opt["_options_path"], device, opt["stype"],
             ", bf16 autocast" if opt["amp"] else "", ", deterministic" if opt.get("deterministic") else "")
    runs.log_world(log, int(opt.get("train_batch_size", 1)))
    return args, opt, device


def _context(opt: Mapping[str, Any], args: argparse.Namespace, run_logger, command: str) -> RunContext:
    """The loop settings; loads the ``--resume`` state (reporting options that differ from the run's)."""
    return RunContext.for_run(opt, runs.show_progress(opt, args), run_logger.run_dir, getattr(args, "resume", None),
                              command)


def _open_run(opt: Mapping[str, Any]):
    """The run folder ``runs/{name}`` (option ``run_dir``), opened once the inputs have been checked."""
    run_dir = runs.run_dir(opt)
    log.info("run folder %s", run_dir)
    return engine.open_run(run_dir, opt)


def _build_set(opt: Mapping[str, Any], key: str, **args: Any):
    """Data set ``data.<key>`` (its ``type`` from :data:`samavqa.datasets.DATASETS`), ``args`` overriding its own."""
    spec = opt["data"][key]
    cls = vqa_datasets.DATASETS.get(spec.get("type", "FusionDataset"))
    return cls({**(spec.get("args") or {}), **args}, stype=opt["stype"])


def _data_sets(opt: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """The data sets whose keys start with ``prefix`` (train / val), in the options' order."""
    out = {}
    for key in opt["data"]:
        if str(key).startswith(prefix):
            out[key] = _build_set(opt, key, phase=(opt["data"][key].get("args") or {}).get(
                "phase", "train" if prefix == "train" else "test"))
            log.info("dataset [%s]: %d videos", key, len(out[key]))
    return out


def _finish(run_logger, summary: Dict[str, Any], lines: Sequence[str]) -> None:
    for line in lines:
        log.info(line)
    run_logger.write_json("summary.json", summary)
    run_logger.close()
    D.cleanup()


# ----------------------------------------------------------------------------------------------- commands
def train_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Train from K400 (or any) weights on ``train*`` sets, validating on every ``val*`` set each epoch."""
    args, opt, device = _setup(argv, "train", "./options/fast-SAMA-train.yml", "SAMA VQA training")
    train_sets, val_sets = _data_sets(opt, "train"), _data_sets(opt, "val")  # label files first: cheap to check
    model = build_model(opt, device)
    load_weights(model, opt, "model")
    seed = int(opt.get("seed", 42))
    bad = runs.bad_item_log(opt, runs.run_dir(opt), log)
    train_loaders = {k: _loader(ds, opt, True, bad, f"train set {k}", seed=seed) for k, ds in train_sets.items()}
    val_loaders = {k: _loader(ds, opt, False, bad, f"validation set {k}") for k, ds in val_sets.items()}
    stats = runs.label_stats(np.concatenate([ds.labels for ds in train_sets.values()]))
    if args.resume:
        engine.resume_path(args.resume)  # fail before the run folder is touched
    run_logger = _open_run(opt)
    ctx = _context(opt, args, run_logger, "train")
    stopped = None
    try:
        best = fit(opt, model, train_loaders, val_loaders, device, run_logger, stats, ctx)
    except engine.RunStopped as e:
        stopped, best = str(e), None
    calibration = {}
    if best is not None:
        def sets_for(key: str):
            # the training videos in test mode, with the sampling of the validation set `key`
            sample_types = opt["data"][key]["args"]["sample_types"]
            sets = [_build_set(opt, k, phase="test", sample_types=sample_types) for k in train_sets]
            return repr(sample_types), sets

        calibration = _calibrate_best(best, opt, sets_for, device, bad, ctx)
    summary = {"command": "train", "name": opt["name"], "num_epochs": int(opt["num_epochs"]), "label_stats": stats,
               "protocol": "best = each metric's own best epoch (original SAMA reporting); final = last epoch; "
                           "selected = epoch with max SRCC+PLCC (the saved EMA checkpoint)",
               "val": best.summary() if best is not None else {}}
    if calibration:
        summary["calibration"] = calibration
    if bad.reasons:
        summary["skipped"] = _skip_note(bad)
    if stopped:
        summary["stopped"] = stopped
    lines = best.summary_lines() if best is not None else [stopped]
    if bad.reasons:
        lines.append(f"{len(bad.reasons)} unreadable video(s) skipped; list in {bad.skip_file}")
    _finish(run_logger, summary, lines)
    return summary


def finetune_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Finetune a trained model on random 80/20 splits of one labelled set (10 splits when ``split_seed > 0``)."""
    args, opt, device = _setup(argv, "finetune", "./options/fast-SAMA-finetune.yml", "SAMA VQA finetuning")
    data = opt["data"]
    key = str(data.get("database", "finetune"))
    infos = read_label_file(option_path(data["anno_file"]), option_path(data["data_prefix"]))
    vqa_datasets.check_files(infos, f"data ({option_path(data['anno_file'])})")
    num_splits = int(opt.get("num_splits", 10)) if int(opt.get("split_seed", -1)) > 0 else 1
    sub_opts = {}
    for phase in ("train", "test"):
        sub = dict(data[phase])
        if "num_threads" in data:
            sub.setdefault("num_threads", data["num_threads"])
        sub_opts[phase] = sub
    seed = int(opt.get("seed", 42))
    if args.resume:
        engine.resume_path(args.resume)  # fail before the run folder is touched
    run_logger = _open_run(opt)
    ctx = _context(opt, args, run_logger, "finetune")
    bad = runs.bad_item_log(opt, run_logger.run_dir, log)
    results: List[Dict[str, Any]] = []
    first_split = ctx.first_split(num_splits)
    if ctx.resume is not None:
        results = list(ctx.resume.get("results", []))
    stopped = None
    for split in range(first_split, num_splits):
        log.info("==================== split %02d / %d ====================", split, num_splits)
        order = list(range(len(infos)))
        random.Random(split * 123).shuffle(order)  # the original split protocol
        n_train = int(0.8 * len(infos))
        train_infos = [infos[i] for i in order[:n_train]]
        eval_infos = [infos[i] for i in order[n_train:]]
        train_set = vqa_datasets.FineTuneDataset(train_infos, sub_opts["train"], stype=opt["stype"], is_train=True)
        val_set = vqa_datasets.FineTuneDataset(eval_infos, sub_opts["test"], stype=opt["stype"], is_train=False)
        log.info("dataset [%s] split %d: %d train, %d test videos", key, split, len(train_set), len(val_set))
        model = build_model(opt, device)
        if ctx.resume is None:  # (a resumed split gets its weights from the state)
            load_weights(model, opt, f"model (split {split})", full_model=True)
        stats = runs.label_stats(train_set.labels)
        train_loader = _loader(train_set, opt, True, bad, f"train split {split:02d}", seed=seed + split)
        val_loader = _loader(val_set, opt, False, bad, f"test split {split:02d}")
        try:
            best = fit(opt, model, {key: train_loader}, {key: val_loader}, device, run_logger, stats, ctx,
                       ckpt_tag=f"_split{split:02d}" if num_splits > 1 else "", save_epochs=False,
                       row_extra={"split": split}, command="finetune", more_after=split < num_splits - 1,
                       state_extra={"split": split, "num_splits": num_splits, "results": list(results)})
        except engine.RunStopped as e:
            stopped = str(e)
            break
        for line in best.summary_lines():
            log.info("split %02d %s", split, line)
        # calibration: the split's training videos scored with its test sampling
        train_as_test = vqa_datasets.FineTuneDataset(train_infos, sub_opts["test"], stype=opt["stype"], is_train=False)
        calibration = _calibrate_best(best, opt, lambda _key: ("test", [train_as_test]), device, bad, ctx)
        results.append({"split": split, **best.summary().get(key, {}),
                        **({"calibration": calibration[key]} if key in calibration else {})})
    per_metric = [r["best_per_metric"] for r in results if "best_per_metric" in r]
    selected = [r["selected"] for r in results if r.get("selected")]
    agg_best, agg_sel = aggregate(per_metric), aggregate(selected)
    lines = [f"[{key}] split {r['split']:02d} best per metric: {engine.format_metrics(r['best_per_metric'])}"
             for r in results if "best_per_metric" in r]
    for how in ("median", "mean"):
        lines.append(f"[{key}] {how} over {len(per_metric)} splits of each split's best per metric (original protocol): "
                     f"{engine.format_metrics(agg_best[how])}")
        lines.append(f"[{key}] {how} over {len(selected)} splits of the selected checkpoints (max SRCC+PLCC): "
                     f"{engine.format_metrics(agg_sel[how])}")
    summary = {"command": "finetune", "name": opt["name"], "database": key, "num_splits": num_splits,
               "protocol": "per split: best = each metric's own best epoch; selected = max SRCC+PLCC epoch. "
                           "Aggregates are median and mean over splits.",
               "splits": results, "aggregate_best_per_metric": agg_best, "aggregate_selected": agg_sel}
    if bad.reasons:
        summary["skipped"] = _skip_note(bad)
        lines.append(f"{len(bad.reasons)} unreadable video(s) skipped; list in {bad.skip_file}")
    if stopped:
        summary["stopped"] = stopped
        lines.append(stopped)
    _finish(run_logger, summary, lines)
    return summary


def test_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Score every ``val*`` set with ``load_path``; write ``name,pred,gt[,set],error`` rows (raw scores; an
    unreadable video gets an empty ``pred`` and the reason in ``error``) and print metrics over the scored videos."""
    args, opt, device = _setup(argv, "test", "./options/fast-SAMA-test.yml", "SAMA VQA testing")
    val_sets = _data_sets(opt, "val")  # label files first: cheap to check
    model = build_model(opt, device)
    load_weights(model, opt, "model", full_model=True)
    predict_fn = make_predict_fn(_branches(model))
    run_logger = _open_run(opt)
    bad = runs.bad_item_log(opt, run_logger.run_dir, log)
    rows: Dict[str, Tuple[List[str], List[Optional[float]], List[float], List[str]]] = {}
    results: Dict[str, Dict[str, float]] = {}
    lines = []
    for key, ds in val_sets.items():
        loader = _loader(ds, opt, False, bad, f"test set {key}")
        names, preds, labels = engine.predict(model, loader, predict_fn, device, runs.show_progress(opt, args),
                                              desc=f"test {key}", amp=opt.get("amp"))
        rows[key] = _scored_rows(ds, names, preds, labels, bad)
        left_out = len(ds) - len(names)
        count = f"{len(names)} videos" + (f" ({left_out} unreadable: error rows, left out)" if left_out else "")
        if engine.has_labels(labels):
            results[key] = engine.evaluate(preds, labels)
            lines.append(f"[{key}] {count}: {engine.format_metrics(results[key])}  (n {results[key]['n']})")
        else:
            lines.append(f"[{key}] {count} scored (no labels, no metrics)")
    out = args.output or os.path.join(run_logger.run_dir, "predictions.csv")
    names = [n for r in rows.values() for n in r[0]]
    preds = [p for r in rows.values() for p in r[1]]
    labels = [g for r in rows.values() for g in r[2]]
    extra = {"set": [k for k, r in rows.items() for _ in r[0]]} if len(rows) > 1 else {}
    extra["error"] = [e for r in rows.values() for e in r[3]]  # empty, or why the video has no prediction
    engine.write_predictions_csv(out, names, preds, labels, extra=extra)
    lines.append(f"predictions written to {out}")
    summary = {"command": "test", "name": opt["name"], "load_path": option_path(opt["load_path"]), "predictions": out,
               "metrics": results}
    if bad.reasons:
        summary["skipped"] = _skip_note(bad)
        lines.append(f"{len(bad.reasons)} unreadable video(s); list in {bad.skip_file}")
    _finish(run_logger, summary, lines)
    return summary


def run_command(fn) -> None:
    """Run a command; option / file / checkpoint problems end with a one-line message instead of a traceback."""
    try:
        fn()
    except (OptionError, LabelError, FileNotFoundError, CheckpointError, TooManyBadItems) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
