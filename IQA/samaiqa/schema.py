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
from typing import Any, Dict, Mapping, Optional, Sequence

import timm

from samacore import run_options
from samacore.losses import LOSSES
from samacore.options import (
    OptionError, check_keys, choice, load_options, load_plugins, option_file_dirs, resolve_path, suggest, typed,
)
from samacore.runlog import get_logger
from samacore.sampling import GRID_ALIASES, GRID_KEYS, resolve_sample_type

from .datasets import TRAIN_AUGMENTS, sampling_args
from .model import BACKBONE_ALIASES, DEFAULT_BACKBONE
from .recipe import LR_SCHEDULES

__all__ = ["DATA_KEYS", "MODEL_KEYS", "check_options", "top_keys", "existing_path", "load_iqa_options", "path_option",
           "read_scoring_options"]

IQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(IQA_DIR)

log = get_logger("samaiqa")

# Top-level keys: the run options of the table (samacore.run_options) and the original's blocks.
BLOCKS = ("data", "model")


def top_keys() -> tuple:
    """The keys the top level of an IQA option file may hold (read from the table on every call)."""
    return run_options.run_option_keys("iqa") + BLOCKS



DATA_KEYS = ("database", "data_info", "test_info", "data_prefix", *GRID_KEYS, *GRID_ALIASES, "exif_transpose",
             "split_by", "train_augment")
MODEL_KEYS = ("backbone", "backbone_args", "hidden_channels", "dropout_ratio", "drop_path_rate")
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
        places = dict.fromkeys([os.getcwd(), REPO_ROOT])  # once each, when the working directory is the root
        where = "" if os.path.isabs(os.path.expanduser(str(p))) else f" (looked in: {', '.join(places)})"
        raise error(f"{what} {p!r} not found{where}")
    return resolved


def check_options(opt: Mapping[str, Any], command: str) -> None:
    """Reject unknown keys / values with a message naming the key and what is allowed.

    ``command``: ``train`` (needs ``data.data_info``), ``test`` (also ``load_path``) or ``score`` (only ``stype``,
    the ``data`` grid and ``model`` are used; nothing is required).
    """
    choice(command, COMMANDS, "command")
    load_plugins(opt)  # first: plugins register names the rest of the file may use
    check_keys(opt, top_keys(), "options", required=() if command == "score" else ("data",))
    try:
        opt["stype"] = resolve_sample_type(opt.get("stype"), "image")
    except ValueError as e:
        raise OptionError(f"options.stype: {e}") from None
    data = opt.get("data") or {}
    check_keys(data, DATA_KEYS, "data", required=() if command == "score" else ("data_info",))
    try:
        sampling_args(data)
    except ValueError as e:
        raise OptionError(str(e)) from None
    if not isinstance(data.get("exif_transpose", False), bool):
        raise OptionError(f"data.exif_transpose must be true or false, got {data['exif_transpose']!r}")
    choice(data.get("split_by", "item"), SPLIT_BY, "data.split_by")
    choice(data.get("train_augment", "flip_rotate"), TRAIN_AUGMENTS.names(), "data.train_augment")
    choice(opt.get("loss", "smooth_l1"), LOSSES.names(), "loss")
    choice(opt.get("lr_schedule", "constant"), LR_SCHEDULES.names(), "lr_schedule")
    _check_model(opt.get("model"))
    if opt.get("optimizer") is not None:
        check_keys(opt["optimizer"], run_options.block_keys("optimizer"), "optimizer")
    run_options.check_run_options(opt, "iqa")
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


def _read(path: str, command: str, overrides: Optional[Mapping[str, Any]] = None,
          sets: Sequence[str] = ()) -> Dict[str, Any]:
    opt = load_options(path, search_dirs=option_file_dirs(IQA_DIR), overrides=overrides, sets=sets)
    check_options(opt, command)
    opt.setdefault("name", os.path.splitext(os.path.basename(opt["_options_path"]))[0])
    ignored = run_options.ignored_options(opt, "iqa")
    if ignored:
        log.info("options: %s: keys of the original files that have no effect here (accepted, ignored)",
                 ", ".join(ignored))
    return opt


def load_iqa_options(path: str, train: bool, overrides: Optional[Mapping[str, Any]] = None,
                     sets: Sequence[str] = ()) -> Dict[str, Any]:
    """Load and check a training (``train``) or test option file (``overrides``: the command line's flags,
    ``sets``: its ``--set KEY.PATH=VALUE`` items, both applied before the checks); training gets the paper's values
    where the original schema has them, and ``data.split_by`` its default (see :func:`split_by`)."""
    opt = _read(path, "train" if train else "test", overrides, sets)
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
