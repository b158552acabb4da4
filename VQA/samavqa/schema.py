"""The VQA option schema: an option file is checked as a whole when it is loaded, before any model or data.

Option files keep the original SAMA / FAST-VQA schema (``VQA/options/fast-SAMA-*.yml``); our keys are optional.
:func:`load_vqa_options` is what every VQA entry point uses (train, finetune, test, ``vqa.py --options``, the
visualiser), so the same file gets the same one-line :class:`~samacore.options.OptionError` everywhere: an unknown
key anywhere (with a near miss suggested), a wrong type or bound, an unknown sample type, backbone or data set
type, a sampling value the sampler would refuse, a sampled branch the model has no backbone for.

Two layouts of ``data``: train / test files hold data sets ``data.<key>.{type, args}`` whose keys start with
``train`` or ``val``; finetune files hold one labelled set with ``train`` / ``test`` sampling
(``data.{database, type, anno_file, data_prefix, train, test}``).
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from samacore import run_options
from samacore.options import (
    REPO_ROOT, OptionError, check_keys, choice, load_options, load_plugins, non_negative_int, option_file_dirs,
    resolve_path,
)
from samacore.runlog import get_logger

from .datasets import DATASETS, IGNORED_DATASET_KEYS, FineTuneDataset
from .models import DiViDeAddEvaluator
from .models.evaluator import branch_backbones
from .sampling import (IGNORED_SAMPLING_KEYS, SAMPLE_TYPES, canonical_sample_type, check_sample_options,
                       video_shaped_reason)

__all__ = ["COMMANDS", "check_vqa_options", "top_keys", "load_vqa_options", "option_path", "fitting_sample_types",
           "refuse_video_shaped_for"]

VQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
log = get_logger("samavqa")

# Top-level option keys: the run options of the table (samacore.run_options) and the original's blocks
BLOCKS = ("data", "model", "load_path_aux")


def top_keys() -> tuple:
    """The keys the top level of a VQA option file may hold (read from the table on every call: a run option
    registered later is accepted)."""
    return run_options.run_option_keys("vqa") + BLOCKS
MODEL_TYPES = ("DiViDeAddEvaluator",)
FINETUNE_DATA_KEYS = ("database", "type", "anno_file", "data_prefix", "train", "test", "num_threads")
#: what each command needs beyond the common schema; None: any file (scoring and drawing read its model and test
#: sampling only)
COMMANDS = ("train", "finetune", "test", None)


def option_path(p: Optional[str]) -> Optional[str]:
    """Option paths: absolute as is; relative against the working directory, then the repository root."""
    return None if p is None else resolve_path(p, [REPO_ROOT])


def load_vqa_options(path: str, command: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
                     sets: Sequence[str] = ()) -> dict:
    """Read an option file (looked up in the working directory, then ``VQA/``, ``VQA/options/`` and the repository
    root: :func:`samacore.options.option_file_dirs`) and check all of it (:func:`check_vqa_options`); ``name``
    defaults to the file's name. ``overrides`` (the command line's flags) and ``sets`` (``--set KEY.PATH=VALUE``)
    replace values first. Keys of the original that have no effect here are named once in the log."""
    opt = load_options(path, search_dirs=option_file_dirs(VQA_DIR), overrides=overrides, sets=sets)
    check_vqa_options(opt, command)
    if "name" not in opt:
        opt["name"] = os.path.splitext(os.path.basename(opt["_options_path"]))[0]
    ignored = ignored_keys(opt)
    if ignored:
        log.info("options: %s: keys of the original files that have no effect here (accepted, ignored)",
                 ", ".join(ignored))
    return opt


def ignored_keys(opt: Mapping[str, Any]) -> List[str]:
    """The keys of ``opt`` (dotted paths) that the original files hold but change nothing here."""
    out = run_options.ignored_options(opt, "vqa")
    data = opt.get("data") or {}
    blocks = [(f"data.{k}", data[k]) for k in ("train", "test") if isinstance(data.get(k), Mapping)]
    blocks += [(f"data.{k}.args", (v or {}).get("args") or {}) for k, v in data.items()
               if isinstance(v, Mapping) and isinstance(v.get("args"), Mapping)]
    for where, block in blocks:
        out += [f"{where}.{k}" for k in IGNORED_DATASET_KEYS if k in block]
        for branch, sopt in (block.get("sample_types") or {}).items():
            out += [f"{where}.sample_types.{branch}.{k}" for k in IGNORED_SAMPLING_KEYS if k in (sopt or {})]
    return out


def check_vqa_options(opt: Dict[str, Any], command: Optional[str] = None) -> Dict[str, Any]:
    """Check every key of ``opt`` (in place: ``stype`` becomes its canonical name); returns ``opt``.

    ``command`` (:data:`COMMANDS`) adds what that command requires (e.g. ``load_path`` for test).
    """
    choice(command, COMMANDS, "command")
    load_plugins(opt)  # first: plugins register names the rest of the file may use
    check_keys(opt, top_keys(), "options")
    run_options.check_run_options(opt, "vqa")
    try:
        opt["stype"] = canonical_sample_type(opt.get("stype"))
    except ValueError as e:
        raise OptionError(f"options.stype: {e}") from None
    if "optimizer" in opt:
        check_keys(opt["optimizer"], run_options.block_keys("optimizer"), "optimizer")
    if "load_path_aux" in opt:
        raise OptionError("load_path_aux (two-checkpoint fusion initialisation of the original FAST-VQA script) is not "
                          "supported; initialise from one checkpoint with load_path")
    branches = _check_model(opt)
    if not isinstance(opt.get("data"), Mapping) or not opt["data"]:
        raise OptionError("missing required option data (the datasets)")
    finetune = command == "finetune" or (command is None and "anno_file" in opt["data"])
    if finetune:
        _check_finetune_data(opt, branches)
    else:
        _check_data_sets(opt, branches)
    if command in ("train", "finetune") and "num_epochs" not in opt:
        raise OptionError("missing required option num_epochs")
    if command == "train" and int(opt.get("split_seed", -1)) > 0:
        raise OptionError("split_seed applies to demo_finetune.py (random splits of one set); the train recipe uses "
                          "the fixed train*/val* sets of `data`")
    if command == "train" and not any(str(k).startswith("train") for k in opt["data"]):
        raise OptionError("no training set: add a data key starting with 'train'")
    if command == "test":
        if not opt.get("load_path"):
            raise OptionError("load_path is required for testing (or --ckpt FILE): a trained SAMA / FAST-VQA "
                              "checkpoint")
        if not any(str(k).startswith("val") for k in opt["data"]):
            raise OptionError("no test set: add a data key starting with 'val'")
    return opt


def _check_model(opt: Mapping[str, Any]) -> list:
    """The ``model`` block: type, the evaluator's arguments, the backbones they name; returns the model branches."""
    if "model" not in opt or not isinstance(opt["model"], Mapping):
        raise OptionError("missing required option model (with type: DiViDeAddEvaluator and args)")
    check_keys(opt["model"], ("type", "args"), "model")
    choice(opt["model"].get("type", "DiViDeAddEvaluator"), MODEL_TYPES, "model.type")
    args = opt["model"].get("args") or {}
    allowed = [p for p in inspect.signature(DiViDeAddEvaluator.__init__).parameters if p != "self"]
    check_keys(args, allowed, "model.args")
    plan_args = {k: args[k] for k in inspect.signature(branch_backbones).parameters if k in args}
    try:
        return list(branch_backbones(**plan_args))
    except ValueError as e:
        raise OptionError(f"model.args: {e}") from None


def _check_branches(branches: list, sample_types: Mapping[str, Any], where: str) -> None:
    """Every sampled branch must feed a model backbone (key before the first ``_``)."""
    for key in sample_types:
        if key.split("_")[0] not in branches:
            raise OptionError(f"{where}.sample_types.{key}: no model backbone for this branch; the model has "
                              f"{', '.join(branches)} (model.args.backbone_preserve_keys)")


def _check_data_sets(opt: Mapping[str, Any], branches: list) -> None:
    """``data.<key>.{type, args}`` with keys starting with train / val; each set's type checks its own args."""
    for key, spec in opt["data"].items():
        if not (str(key).startswith("train") or str(key).startswith("val")):
            raise OptionError(f"data.{key}: dataset keys must start with 'train' or 'val'")
        check_keys(spec, ("type", "args"), f"data.{key}")
        try:
            cls = DATASETS.get(spec.get("type", "FusionDataset"))
        except ValueError as e:
            raise OptionError(f"data.{key}.type: {e}") from None
        args = spec.get("args") or {}
        cls.check_options(args, opt["stype"], f"data.{key}.args")
        _check_branches(branches, args["sample_types"], f"data.{key}.args")


def _check_finetune_data(opt: Mapping[str, Any], branches: list) -> None:
    """``data.{database, type, anno_file, data_prefix, train, test}``: one set, its train and test sampling."""
    data = opt["data"]
    check_keys(data, FINETUNE_DATA_KEYS, "data", required=("anno_file", "data_prefix", "train", "test"))
    choice(data.get("type", "FineTuneDataset"), ["FineTuneDataset"], "data.type")
    if "num_threads" in data:
        non_negative_int(data["num_threads"], "data.num_threads")
    for phase in ("train", "test"):
        FineTuneDataset.check_options(data[phase], opt["stype"], f"data.{phase}")
        _check_branches(branches, data[phase]["sample_types"], f"data.{phase}")


# ------------------------------------------------------------------------------------------ clip shape vs model
def fitting_sample_types(sample_types: Mapping[str, Mapping[str, Any]], fixed_shape: bool) -> List[str]:
    """The sample types whose checks every branch of ``sample_types`` passes; ``fixed_shape``: only those whose
    clips have the shape the options give (not each video's, :func:`~samavqa.sampling.video_shaped_reason`)."""
    def fits(stype: str) -> bool:
        try:
            for branch, opts in sample_types.items():
                check_sample_options(stype, opts, branch)
        except ValueError:
            return False
        return not (fixed_shape and any(video_shaped_reason(stype, o) for o in sample_types.values()))

    return [s for s in SAMPLE_TYPES if fits(s)]


def fitting_types_phrase(sample_types: Mapping[str, Mapping[str, Any]], fixed_shape: bool) -> str:
    """"these options fit the sample types a, b, c" (what a refusal offers instead)."""
    fit = fitting_sample_types(sample_types, fixed_shape)
    return f"these options fit the sample types {', '.join(fit)}" if fit else "no sample type fits these options"


def refuse_video_shaped_for(stype: str, sample_types: Mapping[str, Mapping[str, Any]], flag: str, obstacle: str,
                            all_types: Optional[Mapping[str, Mapping[str, Any]]] = None,
                            instead: Optional[str] = None) -> None:
    """:class:`OptionError` "``flag``: why its clips follow each video, while ``obstacle``; what fits instead" when
    ``stype`` gives any branch of ``sample_types`` such clips (``all_types``: every branch, for the alternatives;
    ``instead``: what to say in their place)."""
    for opts in sample_types.values():
        why = video_shaped_reason(stype, opts or {})
        if why:
            if instead is None:
                instead = ("set arp: false (clips of size_h x size_w)" if canonical_sample_type(stype) == "resize"
                           else fitting_types_phrase(all_types or sample_types, True))
            raise OptionError(f"{flag}: {why}, so its clips change shape from video to video, while {obstacle}; "
                              f"{instead}")
