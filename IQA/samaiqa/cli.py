"""Command-line entry points: ``train_main`` (the 10-split IQA protocol) and ``test_main`` (score a label list).

Option files keep the original ``fast-sama-iqa.yml`` schema; see ``IQA/options/fast-sama-iqa.yml``. The option
file is looked up in the working directory, then in ``IQA/``, ``IQA/options/`` and the repository root; relative
paths inside it are resolved against the working directory, then the repository root.

Training protocol (SAMA IQA, run by the shared loop :mod:`samacore.trainer`): seed 44442 once at start; split
``s`` shuffles with ``random.Random(s * 123)`` and trains on 80% (:mod:`samacore.splits`; with
``data.split_by: reference``, the default for KADID-10k, by reference image); per split a fresh model is
initialised from ``load_path`` and trained with SmoothL1, AdamW (backbone lr x0.1), warm-up
``max(1e-2, it / warmup)`` then a constant lr, and an EMA (0.999) of the weights, which is what is evaluated
every epoch. The result is the median over splits of
each split's best SRCC, PLCC, KRCC and RMSE (each metric's own best epoch, as the original reports). With
``data.test_info`` (a label file naming the test items, e.g. an official split) there is one fixed split instead:
those items are tested, all other items of ``data.data_info`` trained on.

Bad images (unreadable, truncated, not an image, missing) do not stop training: each is skipped, logged once
with its reason and listed in ``{run_dir}/skipped.txt``; more than ``max_bad_fraction`` (default 0.05) bad
items in one data set (or missing from the label file overall) stops the run with an error. Listed images
that are not on disk are reported up front with the label file and line.

Each split's best checkpoint also stores the calibration statistics :mod:`samaiqa.score` uses (see
:func:`samacore.calibration.calibration_stats`): after the split, the saved model scores its own training
images once more in test mode, and the mean / std of those scores are stored next to the training labels'.

Run safety (:mod:`samacore.resume`): the resumable state ``{run_dir}/last.pth`` is saved after every epoch
(model, EMA, optimiser, scheduler, best trackers, logged rows, every RNG, plus the split index and the
finished splits' results); ``--resume RUN_OR_CHECKPOINT`` continues an interrupted run, skipping finished
splits. With ``deterministic: true`` a resumed run ends exactly as an uninterrupted one. ``--stop-after-epochs
N`` (option ``stop_after_epochs``) saves the state and stops after N epochs. ``amp: bf16`` / ``--bf16``:
bfloat16 autocast for training, evaluation and testing (losses in fp32).

torchrun: ``torchrun --nproc_per_node=N IQA/demo_train_iqa_baseline.py -o ...``; ``batch_size`` and
``test_batch_size`` are per process. The training loss sees the global batch (scores gathered over ranks),
evaluation is sharded and gathered back in dataset order, and only rank 0 writes run files (each rank writes
its own skip list, see :mod:`samacore.robust`).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import nn

from samacore import distributed as D
from samacore import engine, loaders, plots, runs, scoring, summary, trainer
from samacore.checkpoint import CheckpointError, checkpoint_meta, download_hint
from samacore.labels import check_folder
from samacore.metrics import METRIC_NAMES, aggregate, format_metrics
from samacore.options import option_file_help
from samacore.resume import restore_log_rows
from samacore.robust import BadItemLog, SkippingLoader, TooManyBadItems
from samacore.runlog import RunLogger, get_logger
from samacore.splits import make_splits
from samacore.utils import seed_everything

from .checkpoints import OWN_FORMAT, load_into_model, scoring_meta
from .datasets import ImageDataset, ImageReadError
from .labels import LabelError, LabelSet, fixed_split, kadid_groups, missing_files, read_info
from .recipe import build_model, make_step_fn, predict_fn, schedule
from .schema import existing_path, load_iqa_options, path_option, split_by

log = get_logger("samaiqa")

DEFAULT_OPTIONS = "options/fast-sama-iqa.yml"
SEED = 44442  # the original's fixed seed


# ----------------------------------------------------------------------------------------------- data
def read_labels(opt: Mapping[str, Any], allow_unlabelled: bool = False) -> LabelSet:
    data = opt["data"]
    info = existing_path(data["data_info"], "data.data_info", LabelError)
    prefix = path_option(data.get("data_prefix", "")) if data.get("data_prefix") else ""
    check_folder(prefix, "data.data_prefix", info)
    return read_info(info, prefix, allow_unlabelled=allow_unlabelled)


def loader_options(opt: Mapping[str, Any]) -> Dict[str, Any]:
    """The engine's loader keys from the original schema (``batch_size``/``num_workers`` are the training ones)."""
    out = {
        "train_batch_size": opt.get("batch_size", 64),
        "train_num_workers": opt.get("num_workers", 0),
        "test_batch_size": opt.get("test_batch_size", opt.get("batch_size", 64)),
        "test_num_workers": opt.get("test_num_workers", opt.get("num_workers", 0)),
    }
    for k in ("pin_memory", "persistent_workers", "prefetch_factor", "deterministic"):
        if k in opt:
            out[k] = opt[k]
    return out


def skipping_loader(dataset: ImageDataset, opt: Mapping[str, Any], train: bool, bad_log: BadItemLog, where: str,
                    seed: int = 0) -> SkippingLoader:
    """A loader (:func:`samacore.loaders.skipping_loader`) that skips and logs unreadable images."""
    return loaders.skipping_loader(dataset, loader_options(opt), train, bad_log, where, errors=(ImageReadError,),
                                   name_fn=lambda i: dataset.paths[i], seed=seed)


def report_missing(labels: LabelSet, bad_log: BadItemLog) -> None:
    """Log listed images that are not on disk (label file and line); stop if they are too many."""
    missing = missing_files(labels)
    for _, message in missing[:20]:
        log.warning("%s", message)
    if len(missing) > 20:
        log.warning("... and %d more listed images not found", len(missing) - 20)
    if missing and len(missing) / len(labels) > bad_log.max_bad_fraction:
        for i, message in missing:
            bad_log.reasons[labels.paths[i]] = message
            bad_log.where[labels.paths[i]] = ["label file"]
        bad_log.write()
        raise TooManyBadItems(
            f"{len(missing)} of {len(labels)} images listed in {labels.source} are missing "
            f"({100.0 * len(missing) / len(labels):.1f}%), more than max_bad_fraction {bad_log.max_bad_fraction:g}; "
            f"list in {bad_log.skip_file}. First: {missing[0][1]}"
        )


def _setup(argv: Optional[Sequence[str]], description: str, test: bool):
    """Parse the command line, read the options, set up determinism / torchrun; returns ``(args, opt, device,
    progress)``."""
    p = runs.command_parser(description, DEFAULT_OPTIONS, option_file_help("IQA"),
                            test, "predictions CSV (name,pred,gt,error); default runs/{name}/test/predictions.csv")
    args = p.parse_args(argv)
    command = "test" if test else "train"
    opt = load_iqa_options(runs.options_file(args, command, "iqa"), train=not test,
                           overrides=runs.option_overrides(args),
                           sets=args.set_options)
    # said before any work (the run folder included); a resumed run's weights come from its state, but every later
    # split starts from load_path again
    resumed_alone = not test and getattr(args, "resume", None) and int(opt.get("num_splits", 10)) <= 1
    if opt.get("load_path") and not resumed_alone:
        _check_load_path(str(opt["load_path"]), runs.load_path_source(args, opt))
    device = runs.apply_command_line(opt, args, log)
    if test:  # before any work
        runs.check_writable(runs.test_run_dir(opt), "run folder")
        runs.check_test_output(args.output)
    progress = runs.show_progress(opt)
    runs.log_world(log, int(opt.get("batch_size", 64)))
    return args, opt, device, progress


def _check_load_path(given: str, source: str) -> None:
    """A missing ``load_path`` named with what asked for it and where to download it (as in VQA)."""
    if not os.path.isfile(path_option(given)):
        raise CheckpointError(f"checkpoint file not found: {given} ({source}){download_hint(given)}")


# ----------------------------------------------------------------------------------------------- train
CALIBRATION_SOURCE = "saved model, test-mode sampling, on this split's training images"


def _split_model(opt: Mapping[str, Any], split: int, ctx: runs.RunContext, device: str) -> nn.Module:
    """A fresh model for ``split``: ``load_path``'s weights, none when resuming (they come from the state)."""
    model = build_model(opt)
    if ctx.resume is not None:
        pass  # the weights come from the resumed state
    elif opt.get("load_path"):
        report = load_into_model(model, existing_path(opt["load_path"], "load_path", CheckpointError),
                                 allow_partial=bool(opt.get("allow_partial_load", False)),
                                 trust=bool(opt.get("trust_checkpoint", False)))
        log.info("split %02d: %s", split, report)
    else:
        log.warning("split %02d: no load_path: training from random initialisation", split)
    return model.to(device)


def _eval_logger(split: int, run_logger: RunLogger, split_logger: RunLogger):
    """The log line, TensorBoard scalars and metrics rows (run and split) of one evaluation of ``split``."""
    def log_eval(e: trainer.Evaluation) -> None:
        stats, m = e.train["train"], e.metrics
        log.info(
            "split %02d epoch %02d: loss %.4f  train SRCC %.4f  backbone lr %.2e  head lr %.2e | %s %s%s | best SRCC %.4f  PLCC %.4f%s",
            split, e.epoch, stats["loss"], stats["train_srcc"], stats["lr_first"], stats["lr_last"], e.key,
            format_metrics(m), "  (saved)" if e.saved else "", e.best.best["srcc"], e.best.best["plcc"],
            f"  ({stats['skipped']} non-finite steps skipped)" if stats["skipped"] else "",
        )
        for k in METRIC_NAMES:
            split_logger.scalar(f"val_{e.key}/{k}", m[k], e.epoch)
            split_logger.scalar(f"val_{e.key}/best_{k}", e.best.best[k], e.epoch)
        split_logger.scalar("train/srcc", stats["train_srcc"], e.epoch)
        row = {"split": split, "epoch": e.epoch, "loss": stats["loss"], "train_srcc": stats["train_srcc"],
               "lr_backbone": stats["lr_first"], "lr_head": stats["lr_last"], **{k: m[k] for k in METRIC_NAMES},
               "n": m["n"]}
        run_logger.row(row)
        split_logger.row(row)

    return log_eval


def _checkpoint_extra(opt: Mapping[str, Any], model: nn.Module, split: int, train_set: ImageDataset) -> Dict[str, Any]:
    """Stored with the split's checkpoints: the IQA format and model, the calibration inputs, and what the
    checkpoint is (:func:`samacore.checkpoint.checkpoint_meta`)."""
    scoring = scoring_meta(opt)
    return dict(format=OWN_FORMAT, model_config=dict(model.config), label_stats=runs.label_stats(train_set.labels),
                split=split, database=str(opt["data"].get("database", "data")), **scoring,
                sama=checkpoint_meta("iqa", opt, scoring))


def _calibrate_split(opt: Mapping[str, Any], split: int, path: str, train_set: ImageDataset, device: str,
                     ctx: runs.RunContext, bad_log: BadItemLog) -> Dict[str, Any]:
    """The split's training images scored in test mode by its best model: calibration stored in ``path`` (and
    returned, for the split's summary row)."""
    scored = ImageDataset(train_set.paths, train_set.labels, train_set.names,
                          dict(train_set.args, exif_transpose=train_set.exif_transpose), train_set.stype, is_train=False)
    loader = skipping_loader(scored, opt, False, bad_log, f"training images of split {split:02d} (calibration)")
    return trainer.calibrate_checkpoint(path, build_model(opt), [loader], predict_fn, device, ctx,
                                        CALIBRATION_SOURCE)


def train_split(
    opt: Mapping[str, Any],
    split: int,
    train_set: ImageDataset,
    test_set: ImageDataset,
    device: str,
    run_logger: RunLogger,
    run_dir: str,
    ctx: runs.RunContext,
    bad_log: BadItemLog,
    more_after: bool = False,
    results: Sequence[Mapping[str, Any]] = (),
) -> Tuple[trainer.BestCheckpointer, Optional[Dict[str, Any]]]:
    """Train one split from ``load_path`` for ``num_epochs`` (:func:`samacore.trainer.fit`); evaluate the EMA
    model after every epoch; store the calibration statistics in the split's best checkpoint. Returns the
    split's best checkpoints and that calibration (None when nothing was saved).

    Unreadable images are skipped and recorded in ``bad_log``. With ``ctx.state_path`` the resumable state is
    saved after every epoch (with ``results``, the finished splits'); ``ctx.resume`` (a state of this split) is
    restored first. Raises :class:`samacore.resume.RunStopped` after ``ctx.stop_after`` epochs of this process
    when work remains (``more_after``: later splits).
    """
    database = str(opt["data"].get("database", "data"))
    train_loader = skipping_loader(train_set, opt, True, bad_log, f"train split {split:02d}",
                                   seed=int(opt.get("seed", SEED)) + split)
    test_loader = skipping_loader(test_set, opt, False, bad_log, f"test split {split:02d}")
    model = _split_model(opt, split, ctx, device)
    save_dir = os.path.abspath(str(opt.get("save_dir", run_dir)))
    split_logger = RunLogger(os.path.join(run_dir, f"split_{split:02d}"), use_tensorboard=D.is_main(),
                             enabled=D.is_main())
    job = trainer.Job(
        model=model, train_loaders={"train": train_loader}, val_loaders={database: test_loader},
        step_fn=make_step_fn(opt.get("loss", "smooth_l1")), predict_fn=predict_fn, schedule=schedule(opt),
        checkpoints=trainer.Checkpoints(
            best_path=lambda key: os.path.join(save_dir, f"{opt['name']}_split{split:02d}_{key}_s_dev.pth"),
            extra=lambda key, extra=_checkpoint_extra(opt, model, split, train_set): extra),
        log_eval=_eval_logger(split, run_logger, split_logger), logger=split_logger, bad_log=bad_log,
        state_extra={"split": split, "num_splits": int(opt.get("num_splits", 10)), "per_split": list(results)})
    if ctx.resume is not None:  # the split's own log holds the rows of the state it continues
        restore_log_rows(split_logger, [r for r in ctx.resume.get("log_rows", []) if r.get("split") == split])
    calibration = None
    try:
        best = trainer.fit(opt, job, device, run_logger, ctx, more_after=more_after)
        if database in best.saved:
            calibration = _calibrate_split(opt, split, best.saved[database], train_set, device, ctx, bad_log)
    finally:
        split_logger.close()
    return best, calibration


def _split_result(best: trainer.BestCheckpointer, split: int, n_train: int, n_test: int,
                  calibration: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The split's row of the run summary (:func:`samacore.summary.best_rows`, with its ``calibration`` as VQA's
    rows have it); None when nothing was evaluated."""
    rows = summary.best_rows(best, split, n_train=n_train, n_test=n_test)
    if not rows:
        return None
    rows[0]["calibration"] = calibration
    return rows[0]


def _given_split(opt: Mapping[str, Any], labels: LabelSet):
    """The one split ``data.test_info`` names (see :func:`samaiqa.labels.fixed_split`)."""
    test_list = read_info(existing_path(opt["data"]["test_info"], "data.test_info", LabelError), "",
                          allow_unlabelled=True)
    return fixed_split(labels, test_list)


def train_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``demo_train_iqa_baseline.py -o OPTIONS [--resume RUN]``: the multi-split IQA protocol; returns the summary."""
    args, opt, device, progress = _setup(argv, "SAMA IQA training: the 10-split protocol", test=False)
    labels = read_labels(opt)
    database = str(opt["data"].get("database", "data"))
    groups = kadid_groups(labels) if split_by(opt["data"]) == "reference" else None
    num_splits = int(opt.get("num_splits", 10))
    if opt["data"].get("test_info") is not None:  # a given split, e.g. an official or content-disjoint one
        splits = _given_split(opt, labels)
        protocol = f"fixed: test = the items of data.test_info ({path_option(opt['data']['test_info'])})"
    else:
        splits = make_splits(len(labels), num_splits, groups)
        protocol = "random.Random(split * 123) shuffle, first 80% train" + (" (by reference image)" if groups else "")
    run_dir = runs.run_dir(opt)
    resumed = runs.start_run(opt, args, run_dir, "train", "iqa")  # before the run folder is touched
    run_logger = runs.open_run(run_dir, opt)
    run_logger.write_json("splits.json", {
        "protocol": protocol,
        "database": database, "data_info": path_option(opt["data"]["data_info"]), "num_items": len(labels),
        "names": labels.names,
        "splits": [{"split": s, "train": tr, "test": te} for s, (tr, te) in enumerate(splits)],
    })
    log.info("options %s | %d images, %d splits, %d epochs, stype %s, device %s%s%s, run folder %s",
             opt["_options_path"], len(labels), num_splits, int(opt["num_epochs"]), opt["stype"], device,
             ", bf16 autocast" if opt["amp"] else "", ", deterministic" if opt.get("deterministic") else "", run_dir)

    ctx = runs.RunContext.for_run(opt, progress, run_dir, resumed, "train")
    bad_log = runs.bad_item_log(opt, run_dir, log)
    report_missing(labels, bad_log)
    # once, before all splits, as the original (+ rank: other dropout masks per process under torchrun)
    seed_everything(int(opt.get("seed", SEED)) + D.rank())

    def run_split(s: int, results: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        train_idx, test_idx = splits[s]
        log.info("==================== split %02d: %d train / %d test ====================", s, len(train_idx),
                 len(test_idx))
        tr, te = labels.subset(train_idx), labels.subset(test_idx)
        train_set = ImageDataset(tr.paths, tr.labels, tr.names, opt["data"], opt["stype"], is_train=True)
        test_set = ImageDataset(te.paths, te.labels, te.names, opt["data"], opt["stype"], is_train=False)
        best, calibration = train_split(opt, s, train_set, test_set, device, run_logger, run_dir, ctx, bad_log,
                                        more_after=s < num_splits - 1, results=results)
        for line in best.summary_lines():
            log.info("split %02d %s", s, line)
        result = _split_result(best, s, len(train_idx), len(test_idx), calibration)
        done = results + ([result] if result is not None else [])
        run_logger.write_json(summary.SUMMARY_FILE, _train_summary(opt, run_dir, num_splits, done, bad_log, None))
        return result

    try:
        per_split, stopped = trainer.run_splits(num_splits, ctx, run_split, results_key="per_split")
        result = _train_summary(opt, run_dir, num_splits, per_split, bad_log, stopped, report=True)
        run_logger.write_json(summary.SUMMARY_FILE, result)
    finally:
        run_logger.close()
    D.cleanup()
    return result


def _train_summary(opt: Mapping[str, Any], run_dir: str, num_splits: int, per_split: List[Dict[str, Any]],
                   bad_log: BadItemLog, stopped: Optional[str], report: bool = False) -> Dict[str, Any]:
    """The run summary of a training (:func:`samacore.summary.training_summary`: per split, median and mean over
    splits), written after every split; ``report``: also log the aggregates, the skipped images, the stop."""
    skipped = {"count": len(bad_log.reasons), "list": bad_log.skip_file} if bad_log.reasons else None
    result = summary.training_summary("train", "iqa", opt["name"], per_split,
                                      database=str(opt["data"].get("database", "data")), run_dir=run_dir,
                                      num_splits=num_splits, skipped=skipped, stopped=stopped)
    if report and per_split:
        for how in ("median", "mean"):
            log.info("%-6s over %d splits of per-split best: %s", how, len(per_split),
                     format_metrics(result["aggregate"]["best_per_metric"][how]))
    if report and skipped:
        log.warning("%d bad images skipped; list in %s", len(bad_log.reasons), bad_log.skip_file)
    if report and stopped:
        log.info("%s", stopped)
    return result


# ----------------------------------------------------------------------------------------------- test
def test_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``demo_test_iqa.py -o OPTIONS --output PRED.csv``: score every image of ``data.data_info`` (only those of
    ``data.test_info`` when it is set: the test side of the fixed split training used) with test-mode sampling
    and the ``load_path`` checkpoint; write ``name,pred,gt,error`` rows (raw scores) as they are scored; print
    metrics if labelled. A bad image (missing, unreadable, not an image) gets a row with an empty ``pred`` and its
    reason in ``error``; metrics are over the images that were scored (their count ``n`` is printed). The run
    folder is ``runs/{name}/test/`` (options.yml, summary.json, predictions.csv by default, scatter.png): the
    training run's files stay as they are."""
    args, opt, device, progress = _setup(argv, "SAMA IQA test: score the images of a label file", test=True)
    labels = read_labels(opt, allow_unlabelled=True)
    if opt["data"].get("test_info") is not None:
        [(_, test_idx)] = _given_split(opt, labels)
        log.info("scoring the %d images of data.test_info (of %d in data.data_info)", len(test_idx), len(labels))
        labels = labels.subset(test_idx)
    dataset = ImageDataset(labels.paths, labels.labels, labels.names, opt["data"], opt["stype"], is_train=False)
    model = build_model(opt)
    report = load_into_model(model, existing_path(opt["load_path"], "load_path", CheckpointError),
                             allow_partial=bool(opt.get("allow_partial_load", False)),
                             trust=bool(opt.get("trust_checkpoint", False)))
    log.info("%s", report)
    model.to(device).eval()
    run_logger = runs.open_run(runs.test_run_dir(opt), opt, use_tensorboard=False)  # apart from the training run's
    out = os.path.abspath(args.output or os.path.join(run_logger.run_dir, "predictions.csv"))
    with scoring.RowWriter(out, ["name", "pred", "gt", "error"], enabled=D.is_main()) as csv_out:
        pairs = _test_rows(dataset, labels, model, opt, device, progress, csv_out)
    database = str(opt["data"].get("database", "test"))
    plots.draw_scatter(os.path.join(run_logger.run_dir, plots.SCATTER_FILE), {database: pairs}, f"{opt['name']}: test")
    result = _test_summary(opt, out, pairs)
    log.info("predictions written to %s", out)
    run_logger.write_json(summary.SUMMARY_FILE, result)
    run_logger.close()
    D.cleanup()
    if not result["results"][0]["n"]:
        raise TooManyBadItems(f"none of the {len(pairs)} images of {labels.source} could be read (reasons in the "
                              f"error column of {out})")
    return result


def _test_rows(dataset: ImageDataset, labels: LabelSet, model: nn.Module, opt: Mapping[str, Any], device: str,
               progress: bool, csv_out: scoring.RowWriter) -> List[Tuple[Optional[float], float]]:
    """Score the test images, writing each row to ``csv_out`` in order as it comes; ``[(pred, label)]``."""
    def score_batch(batch: Mapping[str, Any]) -> List[float]:
        with engine.autocast(device, opt.get("amp")):
            return predict_fn(model, batch, device)[1].float().reshape(-1).tolist()

    def on_row(row: scoring.ScoreRow) -> None:
        if row.error:
            log.warning("could not score %s: %s", row.name, row.error)
        csv_out.write([row.name, "" if row.score is None else repr(row.score),
                       repr(float(labels.labels[row.index])), " ".join(row.error.split())])

    options = loader_options(opt)
    rows = scoring.score_shards(dataset, (ImageReadError,), score_batch, labels.names.__getitem__, on_row,
                                int(options["test_batch_size"]), int(options["test_num_workers"]), progress, "test")
    return [(r.score, float(labels.labels[r.index])) for r in rows]


def _test_summary(opt: Mapping[str, Any], out: str, pairs: Sequence[Tuple[Optional[float], float]]) -> Dict[str, Any]:
    """The test summary (:func:`samacore.summary.test_summary`: one row with ``n`` scored, ``n_failed`` and the
    metrics when labelled), its line logged."""
    n = sum(p is not None for p, _ in pairs)
    database = str(opt["data"].get("database", "test"))
    _, metrics = scoring.test_metrics(database, pairs, "images")
    row: Dict[str, Any] = {"metrics": metrics or None, "n": n, "n_failed": len(pairs) - n}
    result = summary.test_summary("iqa", opt["name"], path_option(opt["load_path"]), out, {database: row})
    if metrics:
        failed = f" ({len(pairs) - n} of {len(pairs)} failed, see the error column)" if n < len(pairs) else ""
        log.info("n = %d images scored%s: %s (predictions rescaled to the labels' mean/std)", n, failed,
                 format_metrics(metrics))
    else:
        log.info("n = %d of %d images scored", n, len(pairs))
    return result


__all__ = ["test_main", "train_main", "train_split"]


# ----------------------------------------------------------------------------------------------- console commands
# pyproject [project.scripts] and the scripts IQA/demo_*.py call these: one function per command, so the console
# command and its script take the same arguments and end a problem the user can fix in one line (exit status 2).
def train_command() -> None:
    """``sama-train-iqa`` and ``IQA/demo_train_iqa_baseline.py``: :func:`train_main` through
    :func:`samacore.runs.run_command`."""
    runs.run_command(train_main)


def test_command() -> None:
    """``sama-test-iqa`` and ``IQA/demo_test_iqa.py``: :func:`test_main` through :func:`samacore.runs.run_command`."""
    runs.run_command(test_main)
