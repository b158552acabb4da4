"""The IQA option schema: an option file is checked as a whole when it is loaded, before any model or data.

Option files keep the original ``fast-sama-iqa.yml`` schema; our keys are optional. Every IQA entry point
(training, test, ``iqa.py --options``, the visualiser) loads its file here, so a bad key anywhere gives the same
one-line :class:`~samacore.options.OptionError` (key path, what is allowed, a near miss) before any work starts.
The option file is looked up in the working directory, then in ``IQA/``, ``IQA/options/`` and the repository root
(:func:`samacore.options.option_file_dirs`); relative paths inside it are resolved against the working directory,
then the repository root.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

import timm

from samacore import runs
from samacore.losses import LOSSES
from samacore.options import (
    OptionError, check_keys, choice, load_options, load_plugins, option_file_dirs, resolve_path, suggest, typed,
)

from .datasets import TRAIN_AUGMENTS, sampling_args
from .model import BACKBONE_ALIASES, DEFAULT_BACKBONE
from .recipe import LR_SCHEDULES
from .sampling import IQA_SAMPLE_TYPES

__all__ = ["DATA_KEYS", "MODEL_KEYS", "TOP_KEYS", "check_options", "existing_path", "load_iqa_options", "path_option",
           "read_scoring_options"]

IQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(IQA_DIR)

# Keys of the original schema, then ours. `l_num_epochs` and `constant_epochs` are accepted for compatibility;
# the IQA schedule (warm-up, then constant) does not use them.
TOP_KEYS = (
    "name", "stype", "num_epochs", "l_num_epochs", "warmup_epochs", "constant_epochs", "ema", "save_model",
    "batch_size", "num_workers", "test_batch_size", "test_num_workers", "num_splits", "data", "model",
    "optimizer", "load_path",
    "seed", "ema_decay", "ema_warmup", "allow_partial_load", "run_dir", "save_dir", "device", "progress", "pin_memory",
    "persistent_workers", "prefetch_factor", "max_bad_fraction", "deterministic", "amp", "max_bad_steps",
    "stop_after_epochs", "plugins", "trust_checkpoint", "loss", "lr_schedule",
)
DATA_KEYS = ("database", "data_info", "test_info", "data_prefix", "fwin_h", "fwin_w", "fsize_h", "fsize_w",
             "exif_transpose", "split_by", "train_augment")
MODEL_KEYS = ("backbone", "backbone_args", "hidden_channels", "dropout_ratio", "drop_path_rate")
OPTIMIZER_KEYS = ("lr", "backbone_lr_mult", "wd")
#: ``data.split_by``: ``item`` shuffles the items; ``reference`` keeps the items of one reference image on one side
SPLIT_BY = ("item", "reference")
COMMANDS = ("train", "test", "score")


def path_option(p: Optional[str]) -> Optional[str]:
    """A path from the options: absolute as is; relative against the working directory, then the repo root."""
    return None if p is None else resolve_path(str(p), [REPO_ROOT])


def existing_path(p: str, what: str, error: type = OptionError) -> str:
    """:func:`path_option` for a file that must exist; the error names the option and where it was looked for."""
    resolved = path_option(p)
    if not os.path.exists(resolved):
        where = "" if os.path.isabs(os.path.expanduser(str(p))) else f" (looked in: {os.getcwd()}, {REPO_ROOT})"
        raise error(f"{what} {p!r} not found{where}")
    return resolved


def check_options(opt: Mapping[str, Any], command: str) -> None:
    """Reject unknown keys / values with a message naming the key and what is allowed.

    ``command``: ``train`` (needs ``data.data_info``), ``test`` (also ``load_path``) or ``score`` (only ``stype``,
    the ``data`` grid and ``model`` are used; nothing is required).
    """
    choice(command, COMMANDS, "command")
    load_plugins(opt)  # first: plugins register names the rest of the file may use
    check_keys(opt, TOP_KEYS, "options", required=() if command == "score" else ("data",))
    choice(opt.get("stype", "sama"), IQA_SAMPLE_TYPES, "stype")
    data = opt.get("data") or {}
    check_keys(data, DATA_KEYS, "data", required=() if command == "score" else ("data_info",))
    try:
        sampling_args(data)
    except ValueError as e:
        raise OptionError(str(e)) from None
    if not isinstance(data.get("exif_transpose", False), bool):
        raise OptionError(f"data.exif_transpose must be true or false, got {data['exif_transpose']!r}")
    choice(data.get("split_by", "item"), SPLIT_BY, "data.split_by")
    choice(data.get("train_augment", "flip_rotate"), TRAIN_AUGMENTS, "data.train_augment")
    choice(opt.get("loss", "smooth_l1"), LOSSES.names(), "loss")
    choice(opt.get("lr_schedule", "constant"), LR_SCHEDULES, "lr_schedule")
    _check_model(opt.get("model"))
    if opt.get("optimizer") is not None:
        check_keys(opt["optimizer"], OPTIMIZER_KEYS, "optimizer")
    runs.check_run_options(opt)
    if command == "train":
        for key in ("num_epochs", "num_splits", "batch_size"):
            value = typed(opt, key, int, "options", default=1)
            if value < (0 if key == "num_epochs" else 1):
                raise OptionError(f"options.{key} must be {'>= 0' if key == 'num_epochs' else '>= 1'}, got {value}")
        if data.get("test_info") is not None and opt.get("num_splits", 1) != 1:
            raise OptionError(f"data.test_info gives one fixed train/test split, so options.num_splits must be 1 "
                              f"(or absent), got {opt['num_splits']}; remove data.test_info for random splits")
    elif command == "test" and not opt.get("load_path"):
        raise OptionError("options.load_path is required for testing (or --ckpt FILE): the checkpoint to score images "
                          "with")


def _check_model(model: Any) -> None:
    """The optional ``model`` block: its keys, a timm model name, timm arguments as a mapping."""
    if model is None:
        return
    check_keys(model, MODEL_KEYS, "model")
    name = BACKBONE_ALIASES.get(model.get("backbone", DEFAULT_BACKBONE), model.get("backbone", DEFAULT_BACKBONE))
    if not isinstance(name, str) or not timm.is_model(name):
        raise OptionError(f"model.backbone = {model.get('backbone')!r} is not a timm model"
                          f"{suggest(str(name), timm.list_models())} (e.g. {DEFAULT_BACKBONE!r}; a plugin file can "
                          "register one with timm's @register_model)")
    if not isinstance(model.get("backbone_args", {}), Mapping):
        raise OptionError("model.backbone_args must be a mapping of timm model arguments")


def _read(path: str, command: str, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    opt = load_options(path, search_dirs=option_file_dirs(IQA_DIR), overrides=overrides)
    check_options(opt, command)
    opt.setdefault("name", os.path.splitext(os.path.basename(opt["_options_path"]))[0])
    opt.setdefault("stype", "sama")
    return opt


def load_iqa_options(path: str, train: bool, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Load and check a training (``train``) or test option file (``overrides``: top-level keys the command line
    replaces); training gets the paper's values where the original schema has them, and ``data.split_by`` its
    default (see :func:`split_by`)."""
    opt = _read(path, "train" if train else "test", overrides)
    if train:
        if opt["data"].get("test_info") is not None:
            opt.setdefault("num_splits", 1)
        for key, value in (("num_splits", 10), ("num_epochs", 50), ("warmup_epochs", 5), ("batch_size", 64)):
            opt.setdefault(key, value)
    return opt


def read_scoring_options(path: str) -> Dict[str, Any]:
    """An option file for scoring or drawing: checked as a whole; only ``stype``, ``data`` (grid,
    ``exif_transpose``) and ``model`` are used."""
    opt = _read(path, "score")
    opt["data"] = dict(opt.get("data") or {})
    return opt


def split_by(data: Mapping[str, Any]) -> str:
    """``data.split_by``; without it ``reference`` for a database named ``kadid*`` (the original's grouping of
    KADID-10k by reference image, kept for its option files), else ``item``."""
    default = "reference" if str(data.get("database", "")).lower().startswith("kadid") else "item"
    return str(data.get("split_by", default))
