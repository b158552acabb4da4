"""Command-line entry points of the VQA tree: train (LSVQ), finetune (splits of a small set) and test.

The recipes follow SAMA / FAST-VQA: AdamW with backbone lr x0.1, per-iteration warm-up + cosine,
``plcc_loss + 0.3 * rank_loss`` on the temporally summed score map (:mod:`samavqa.recipe`), EMA of the
parameters evaluated every epoch, and checkpoints named as the original names them; the loop is the one both
trees share (:mod:`samacore.trainer`). Option files keep the original YAML schema (:mod:`samavqa.schema`).

Runs write ``runs/{name}/`` (options.yml, metrics.csv/jsonl, TensorBoard, curves.png, summary.json, and
``last.pth``, the resumable state saved at the end of every epoch: ``--resume runs/{name}``); the test command
writes to ``runs/{name}/test/`` (options.yml, summary.json, predictions.csv), never over the training run's files;
checkpoints go to ``pretrained_weights/`` (option ``save_dir``), all relative to the working directory.

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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from torch import nn

from samacore import distributed as D
from samacore import engine, plots, runs, scoring, summary, trainer
from samacore.checkpoint import CheckpointError, checkpoint_meta, download_hint, load_checkpoint
from samacore.ema import unwrap
from samacore.metrics import METRIC_NAMES, aggregate, format_metrics
from samacore.options import option_file_help
from samacore.resume import RunStopped
from samacore.robust import BadItem, BadItemLog
from samacore.runlog import RunLogger, get_logger
from samacore.splits import random_split
from samacore.utils import seed_everything

from . import datasets as vqa_datasets
from .datasets import skipping_loader
from .labels import read_label_file
from .models.checkpoints import BACKBONE_ONLY, detect_format_of, load_vqa_weights, scoring_meta
from .presets import missing_checkpoint
from .recipe import build_model, make_predict_fn, make_step_fn, schedule
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
    obj = load_checkpoint(path, as_weights=True, trust=bool(opt.get("trust_checkpoint", False)))
    fmt = detect_format_of(obj, path)
    if full_model and fmt in BACKBONE_ONLY and not allow_partial:
        raise CheckpointError(
            f"{path} holds backbone weights only ({BACKBONE_ONLY[fmt]}); this command needs a complete SAMA / "
            "FAST-VQA model ('fragments_backbone.*' and 'vqa_head.*'). Set allow_partial_load: true to start the "
            "head from scratch.")
    kwargs = {"allow_partial": allow_partial}
    if "init_fragment_bias_from_relative" in opt:  # K400 init: FAST-VQA's copy of the relative tables
        kwargs["init_fragment_bias_from_relative"] = bool(opt["init_fragment_bias_from_relative"])
    report = load_vqa_weights(unwrap(model), obj, source=path, **kwargs)
    log.info("%s: loaded %s (%s)", what, path, report)
    if not full_model and fmt not in BACKBONE_ONLY:
        log.info("%s: the quality head comes from %s too (the original demo_train.py starts it from scratch; "
                 "README, deliberate differences)", what, path)


# ----------------------------------------------------------------------------------------------- bad videos
def _skip_note(bad: BadItemLog) -> Dict[str, Any]:
    """Summary entry for the skipped videos (empty when none)."""
    return {"count": len(bad.reasons), "list": bad.skip_file} if bad.reasons else {}


# ----------------------------------------------------------------------------------------------- training
CALIBRATION_SOURCE = ("test-mode scores of the training videos with the sampling of the validation set the "
                      "checkpoint was selected on")


def _calibrate(best: trainer.BestCheckpointer, opt: Mapping[str, Any], model: nn.Module, sets_for: Any, device: str,
               bad: BadItemLog, ctx: runs.RunContext) -> Dict[str, Dict[str, Any]]:
    """Calibration statistics for every saved best checkpoint of ``model``'s training
    (:func:`samacore.trainer.calibrate_best`); ``sets_for(key) -> (sampling id, [test-mode data sets of the
    training videos])``."""
    def loaders_for(key: str):
        sampling, sets = sets_for(key)
        where = f"training videos (calibration of {key})"
        return sampling, lambda: [skipping_loader(ds, opt, False, bad, where if len(sets) == 1 else f"{where} {i}")
                                  for i, ds in enumerate(sets)]

    return trainer.calibrate_best(best, lambda: build_model(opt, device), loaders_for,
                                  make_predict_fn(list(model.branches)), device, ctx, CALIBRATION_SOURCE)


def _job(opt: Mapping[str, Any], model: nn.Module, train_loaders: Mapping[str, Any], val_loaders: Mapping[str, Any],
         run_logger: RunLogger, label_stats: Mapping[str, float], bad: BadItemLog, ckpt_tag: str = "",
         save_epochs: bool = True, row_extra: Optional[Mapping[str, Any]] = None,
         state_extra: Optional[Mapping[str, Any]] = None) -> trainer.Job:
    """The VQA recipe as a :class:`samacore.trainer.Job`: checkpoints named as the original names them
    (``{name}[_splitNN]_{val key}_s_dev_v0.0.pth``, ``{name}_Epoch_NN.pth`` in ``save_dir``, default
    ``pretrained_weights/``), a train and a validation row per set and epoch in metrics.csv."""
    name, row_extra = opt["name"], dict(row_extra or {})
    save_dir = os.path.abspath(str(opt.get("save_dir", "pretrained_weights")))  # outputs: relative to the cwd

    def log_train(epoch: int, key: str, stats: Mapping[str, float]) -> None:
        log.info("epoch %02d [%s] loss %.4f  train SRCC %.4f  backbone lr %.2e  head lr %.2e  (%.0fs)%s", epoch, key,
                 stats["loss"], stats["train_srcc"], stats["lr_first"], stats["lr_last"], stats["seconds"],
                 f"  {stats['skipped']} non-finite steps skipped" if stats["skipped"] else "")
        run_logger.scalar("train/srcc", stats["train_srcc"], epoch)
        run_logger.row({**row_extra, "epoch": epoch, "set": key, "loss": stats["loss"], "srcc": stats["train_srcc"],
                        "lr_backbone": stats["lr_first"], "lr_head": stats["lr_last"]})

    def log_eval(e: trainer.Evaluation) -> None:
        m = e.metrics
        log.info("epoch %02d [%s] %s  (n %d%s)%s | best so far (per metric): SRCC %.4f  PLCC %.4f", e.epoch, e.key,
                 format_metrics(m), m["n"], f" of {e.size}: unreadable videos left out" if m["n"] < e.size else "",
                 "  (saved)" if e.saved else "", e.best.best["srcc"], e.best.best["plcc"])
        for k in METRIC_NAMES:
            run_logger.scalar(f"val_{e.key}/{k}", m[k], e.epoch)
        run_logger.row({**row_extra, "epoch": e.epoch, "set": e.key, **{k: m[k] for k in METRIC_NAMES}, "n": m["n"]})

    branches = list(unwrap(model).branches)
    return trainer.Job(
        model=model, train_loaders=train_loaders, val_loaders=val_loaders, step_fn=make_step_fn(branches),
        predict_fn=make_predict_fn(branches), schedule=schedule(opt),
        checkpoints=trainer.Checkpoints(
            best_path=lambda key: os.path.join(save_dir, f"{name}{ckpt_tag}_{key}_s_dev_v0.0.pth"),
            epoch_path=(lambda epoch: os.path.join(save_dir, f"{name}_Epoch_{epoch:02d}.pth")) if save_epochs else None,
            extra=lambda key: {"label_stats": dict(label_stats),
                               "sama": checkpoint_meta("vqa", opt, scoring_meta(opt, key))}),
        log_train=log_train, log_eval=log_eval, bad_log=bad,
        state_extra=dict(state_extra or {}))


def _setup(argv, command: str, default_opt: str, description: str):
    """Parse the command line, load and check the whole option file, set up determinism / torchrun / seeds."""
    p = runs.command_parser(description, default_opt, option_file_help("VQA"),
                            command == "test",
                            "predictions CSV (name,pred,gt[,set],error); default runs/{name}/test/predictions.csv")
    args = p.parse_args(argv)
    opt = load_vqa_options(runs.options_file(args, command, "vqa"), command, overrides=runs.option_overrides(args),
                           sets=args.set_options)
    # said before any work; a resumed training takes its weights from the state (finetuning starts every later
    # split from load_path again)
    if opt.get("load_path") and not (command == "train" and getattr(args, "resume", None)):
        _check_load_path(option_path(opt["load_path"]), runs.load_path_source(args, opt))
    device = runs.apply_command_line(opt, args, log)
    if command == "test":  # before any work
        runs.check_writable(runs.test_run_dir(opt), "run folder")
        runs.check_test_output(args.output)
    seed_everything(int(opt.get("seed", 42)) + D.rank())
    log.info("options %s, device %s, sampling %s%s%s", opt["_options_path"], device, opt["stype"],
             ", bf16 autocast" if opt["amp"] else "", ", deterministic" if opt.get("deterministic") else "")
    runs.log_world(log, int(opt.get("train_batch_size", 1)))
    return args, opt, device


def _check_load_path(path: str, source: str) -> None:
    """A missing ``load_path`` named with what asked for it and where to download it."""
    if not os.path.isfile(path):
        error = missing_checkpoint(path, f" ({source})")
        raise CheckpointError(f"{error}{download_hint(path)}")


def _context(opt: Mapping[str, Any], args: argparse.Namespace, run_logger, command: str,
             resumed: Optional[Mapping[str, Any]]) -> runs.RunContext:
    """The loop settings, with the ``--resume`` state :func:`samacore.runs.start_run` read."""
    return runs.RunContext.for_run(opt, runs.show_progress(opt), run_logger.run_dir, resumed, command)


def _open_run(opt: Mapping[str, Any], test: bool = False):
    """The run folder ``runs/{name}`` (option ``run_dir``; testing: its ``test/`` folder, so the training run's
    files stay as they are), opened once the inputs have been checked."""
    run_dir = runs.test_run_dir(opt) if test else runs.run_dir(opt)
    log.info("run folder %s", run_dir)
    return runs.open_run(run_dir, opt, use_tensorboard=not test)


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


def _finish(run_logger, result: Dict[str, Any], lines: Sequence[str]) -> None:
    for line in lines:
        log.info(line)
    run_logger.write_json(summary.SUMMARY_FILE, result)
    run_logger.close()
    D.cleanup()


# ----------------------------------------------------------------------------------------------- commands
def train_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Train from K400 (or any) weights on ``train*`` sets, validating on every ``val*`` set each epoch."""
    args, opt, device = _setup(argv, "train", "./options/fast-SAMA-train.yml", "SAMA VQA training")
    train_sets, val_sets = _data_sets(opt, "train"), _data_sets(opt, "val")  # label files first: cheap to check
    resumed = runs.start_run(opt, args, runs.run_dir(opt), "train", "vqa")  # before the model and the run folder
    model = build_model(opt, device)
    if resumed is None:  # (a resumed run gets its weights from the state)
        load_weights(model, opt, "model")
    seed = int(opt.get("seed", 42))
    bad = runs.bad_item_log(opt, runs.run_dir(opt), log)
    train_loaders = {k: skipping_loader(ds, opt, True, bad, f"train set {k}", seed=seed)
                     for k, ds in train_sets.items()}
    val_loaders = {k: skipping_loader(ds, opt, False, bad, f"validation set {k}") for k, ds in val_sets.items()}
    stats = runs.label_stats(np.concatenate([ds.labels for ds in train_sets.values()]))
    run_logger = _open_run(opt)
    ctx = _context(opt, args, run_logger, "train", resumed)
    stopped = None
    try:
        best = trainer.fit(opt, _job(opt, model, train_loaders, val_loaders, run_logger, stats, bad), device,
                           run_logger, ctx)
    except RunStopped as e:
        stopped, best = str(e), None
    calibration = {}
    if best is not None:
        def sets_for(key: str):
            # the training videos in test mode, with the sampling of the validation set `key`
            sample_types = opt["data"][key]["args"]["sample_types"]
            sets = [_build_set(opt, k, phase="test", sample_types=sample_types) for k in train_sets]
            return repr(sample_types), sets

        calibration = _calibrate(best, opt, model, sets_for, device, bad, ctx)
    rows = summary.best_rows(best) if best is not None else []
    for row in rows:
        row["calibration"] = calibration.get(row["set"])
    result = summary.training_summary("train", "vqa", opt["name"], rows, num_epochs=int(opt["num_epochs"]),
                                      label_stats=stats, skipped=_skip_note(bad), stopped=stopped)
    lines = best.summary_lines() if best is not None else [stopped]
    if bad.reasons:
        lines.append(f"{len(bad.reasons)} unreadable video(s) skipped; list in {bad.skip_file}")
    _finish(run_logger, result, lines)
    return result


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
    resumed = runs.start_run(opt, args, runs.run_dir(opt), "finetune", "vqa")  # before the run folder is touched
    run_logger = _open_run(opt)
    ctx = _context(opt, args, run_logger, "finetune", resumed)
    bad = runs.bad_item_log(opt, run_logger.run_dir, log)

    def run_split(split: int, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        log.info("==================== split %02d / %d ====================", split, num_splits)
        train_idx, test_idx = random_split(len(infos), split)  # the original protocol, in its shuffled order
        train_infos, eval_infos = [infos[i] for i in train_idx], [infos[i] for i in test_idx]
        dataset = lambda items, phase: vqa_datasets.FineTuneDataset(items, sub_opts[phase], stype=opt["stype"],
                                                                   is_train=phase == "train")
        train_set, val_set = dataset(train_infos, "train"), dataset(eval_infos, "test")
        log.info("dataset [%s] split %d: %d train, %d test videos", key, split, len(train_set), len(val_set))
        model = build_model(opt, device)
        if ctx.resume is None:  # (a resumed split gets its weights from the state)
            load_weights(model, opt, f"model (split {split})", full_model=True)
        train_loader = skipping_loader(train_set, opt, True, bad, f"train split {split:02d}", seed=seed + split)
        val_loader = skipping_loader(val_set, opt, False, bad, f"test split {split:02d}")
        job = _job(opt, model, {key: train_loader}, {key: val_loader}, run_logger, runs.label_stats(train_set.labels),
                   bad, ckpt_tag=f"_split{split:02d}" if num_splits > 1 else "", save_epochs=False,
                   row_extra={"split": split},
                   state_extra={"split": split, "num_splits": num_splits, "results": list(results)})
        best = trainer.fit(opt, job, device, run_logger, ctx, command="finetune", more_after=split < num_splits - 1)
        for line in best.summary_lines():
            log.info("split %02d %s", split, line)
        # calibration: the split's training videos scored with its test sampling
        calibration = _calibrate(best, opt, model, lambda _key: ("test", [dataset(train_infos, "test")]), device,
                                 bad, ctx)
        row = summary.best_rows(best, split)[0]
        row["calibration"] = calibration.get(key)
        return row

    results, stopped = trainer.run_splits(num_splits, ctx, run_split)
    result, lines = _finetune_summary(opt, key, num_splits, results, bad, stopped)
    _finish(run_logger, result, lines)
    return result


def _finetune_summary(opt: Mapping[str, Any], key: str, num_splits: int, results: List[Dict[str, Any]],
                      bad: BadItemLog, stopped: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
    """The finetuning summary (per split, median and mean over splits) and the lines that report it."""
    per_metric = [r["best_per_metric"] for r in results if r.get("best_per_metric")]
    selected = [r["selected"] for r in results if r.get("selected")]
    agg_best, agg_sel = aggregate(per_metric), aggregate(selected)
    lines = [f"[{key}] split {r['split']:02d} best per metric: {format_metrics(r['best_per_metric'])}"
             for r in results if "best_per_metric" in r]
    for how in ("median", "mean"):
        lines.append(f"[{key}] {how} over {len(per_metric)} splits of each split's best per metric (original "
                     f"protocol): {format_metrics(agg_best[how])}")
        lines.append(f"[{key}] {how} over {len(selected)} splits of the selected checkpoints (max SRCC+PLCC): "
                     f"{format_metrics(agg_sel[how])}")
    result = summary.training_summary("finetune", "vqa", opt["name"], results, database=key, num_splits=num_splits,
                                      skipped=_skip_note(bad), stopped=stopped)
    if bad.reasons:
        lines.append(f"{len(bad.reasons)} unreadable video(s) skipped; list in {bad.skip_file}")
    if stopped:
        lines.append(stopped)
    return result, lines


def test_main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Score every ``val*`` set with ``load_path``; write ``name,pred,gt[,set],error`` rows as they are scored (raw
    scores; an unreadable video gets an empty ``pred`` and the reason in ``error``) and print metrics over the
    scored videos."""
    args, opt, device = _setup(argv, "test", "./options/fast-SAMA-test.yml", "SAMA VQA testing")
    val_sets = _data_sets(opt, "val")  # label files first: cheap to check
    model = build_model(opt, device)
    load_weights(model, opt, "model", full_model=True)
    model.eval()
    run_logger = _open_run(opt, test=True)
    bad = runs.bad_item_log(opt, run_logger.run_dir, log)
    out = args.output or os.path.join(run_logger.run_dir, "predictions.csv")
    columns = ["name", "pred", "gt"] + (["set"] if len(val_sets) > 1 else []) + ["error"]
    results: Dict[str, Dict[str, float]] = {}
    lines, sets = [], {}
    with scoring.RowWriter(out, columns, enabled=D.is_main()) as csv_out:
        for key, ds in val_sets.items():
            sets[key] = _test_set(key, ds, model, opt, device, bad, runs.show_progress(opt), csv_out,
                                  len(val_sets) > 1)
            line, metrics = scoring.test_metrics(key, sets[key], "videos")
            lines.append(line)
            if metrics:
                results[key] = metrics
    plots.draw_scatter(os.path.join(run_logger.run_dir, plots.SCATTER_FILE), sets, f"{opt['name']}: test")
    lines.append(f"predictions written to {out}")
    result = summary.test_summary("vqa", opt["name"], option_path(opt["load_path"]), out,
                                  {key: {"metrics": m} for key, m in results.items()}, skipped=_skip_note(bad))
    if bad.reasons:
        lines.append(f"{len(bad.reasons)} unreadable video(s); list in {bad.skip_file}")
    _finish(run_logger, result, lines)
    return result


def _test_set(key: str, ds: Any, model: nn.Module, opt: Mapping[str, Any], device: str, bad: BadItemLog,
              progress: bool, csv_out: scoring.RowWriter, with_set: bool) -> List[Tuple[Optional[float], float]]:
    """Score one test set, writing its rows to ``csv_out`` in its order as they come; ``[(pred, label)]``."""
    predict_fn = make_predict_fn(list(model.branches))

    def score_batch(batch: Mapping[str, Any]) -> List[float]:
        with engine.autocast(device, opt.get("amp")):
            return predict_fn(model, batch, device)[1].float().reshape(-1).tolist()

    def on_row(row: scoring.ScoreRow) -> None:
        info = ds.video_infos[row.index]
        if row.error:
            bad.record(BadItem(row.index, info["filename"], row.error), f"test set {key}", len(ds))
        csv_out.write([info["fileid"], "" if row.score is None else repr(row.score), repr(float(info["label"]))]
                      + ([key] if with_set else []) + [" ".join(row.error.split())])

    rows = scoring.score_shards(ds, (vqa_datasets.VideoReadError,), score_batch, lambda i: ds.video_infos[i]["fileid"],
                                on_row, int(opt.get("test_batch_size", 1)), int(opt.get("test_num_workers", 0)),
                                progress, f"test {key}")
    return [(r.score, float(ds.video_infos[r.index]["label"])) for r in rows]


# ----------------------------------------------------------------------------------------------- console commands
# pyproject [project.scripts] and the scripts VQA/demo_*.py call these: one function per command, so the console
# command and its script take the same arguments and end a problem the user can fix in one line (exit status 2).
def train_command() -> None:
    """``sama-train-vqa`` and ``VQA/demo_train.py``: :func:`train_main` through :func:`samacore.runs.run_command`."""
    runs.run_command(train_main)


def finetune_command() -> None:
    """``sama-finetune-vqa`` and ``VQA/demo_finetune.py``: :func:`finetune_main` through
    :func:`samacore.runs.run_command`."""
    runs.run_command(finetune_main)


def test_command() -> None:
    """``sama-test-vqa`` and ``VQA/demo_test.py``: :func:`test_main` through :func:`samacore.runs.run_command`."""
    runs.run_command(test_main)
