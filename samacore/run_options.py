"""The run options: one table of the scalar keys of both trees' option files, from which the schemas check them
and the commands build their flags.

An option file holds the original's structure (``data``, ``model``, ``optimizer``: each tree's schema checks those)
and scalar run keys: ``num_epochs``, ``seed``, ``ema_decay``, ``stop_after_epochs``, ... Each scalar key is one
:class:`RunOption` in :data:`RUN_OPTIONS`: its type, bounds or choices, the default the code uses, which trees
read it (and where it is accepted for compatibility with the original but has no effect), its help text and,
where a command-line flag sets it, the flag. So a new run option is one entry: both schemas accept and check it,
the flag appears in the commands' ``--help``, and ``--set KEY=VALUE`` reaches it like any other option.

Every command also takes ``--set KEY.PATH=VALUE`` (repeatable) for any option, nested ones included
(``--set optimizer.lr=3e-4 --set data.train.args.sample_types.fragments.num_clips=2``): it is applied to the
loaded file before anything is checked, so the value is typed and checked by the same schema as the file, and
it is recorded in the run's ``options.yml`` (see :func:`samacore.options.apply_sets`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .options import OptionError, typed
from .precision import amp_mode
from .registry import Registry

__all__ = ["RUN_OPTIONS", "RunOption", "add_run_flags", "block_keys", "check_run_options", "flag_overrides", "ignored_options",
           "run_option", "run_option_keys"]

TREES = ("vqa", "iqa")
#: commands that offer a flag: "train" (train and finetune), "test", "score" (vqa.py / iqa.py)
COMMAND_KINDS = ("train", "test", "score")


@dataclass(frozen=True)
class RunOption:
    """One scalar option key (``a.b`` for a key inside the ``a`` block).

    ``kind``: the Python type(s) allowed (an int is accepted where a float is expected); ``low`` / ``high``:
    inclusive bounds; ``choices``: the allowed values; ``default``: what the code uses when the key is absent
    (``None``: absent means "not set", or the tree decides, as the help says). ``trees``: which trees' files may
    hold it; ``ignored_in``: trees where it is accepted for compatibility with the original files but changes
    nothing (named once in the log). ``flag``: the command-line flag that sets it; ``flag_const``: the value a
    flag without an argument stores (None: the flag takes a value of ``kind``); ``flag_commands``: the commands
    that offer it.
    """

    key: str
    kind: Union[type, Tuple[type, ...]]
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None
    default: Any = None
    trees: Tuple[str, ...] = TREES
    ignored_in: Tuple[str, ...] = ()
    flag: Optional[str] = None
    flag_const: Any = None
    flag_commands: Tuple[str, ...] = ("train", "test")
    metavar: Optional[str] = None
    nullable: bool = False  # an empty value (YAML null, ``--set KEY=``) means something: "none" / "automatic"
    flag_help: Optional[str] = None  # what a flag without an argument does (``help`` says what the option is)

    def check(self, opt: Mapping[str, Any], where: str = "options") -> None:
        """Type, bounds and choices of this key in ``opt`` (absent: nothing to check; an empty value is refused
        unless ``nullable``: the trees would read it as a number later)."""
        parent, key = _parent(opt, self.key)
        if parent is None or key not in parent:
            return
        path = f"{where}.{self.key}"
        if parent[key] is None:
            if self.nullable:
                return
            kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
            raise OptionError(f"{path} is empty: give it a value ({' or '.join(k.__name__ for k in kinds)}) or "
                              f"leave the key out")
        value = typed(parent, key, self.kind, path.rsplit(".", 1)[0])
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            raise OptionError(f"{path} must be a number in [{self.low:g}, {self.high:g}], got {value!r}")
        if self.low is not None and value < self.low:
            raise OptionError(f"{path} must be at least {self.low:g}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{path} = {value!r} is not allowed; choose one of: {', '.join(map(str, self.choices))}")


def _parent(opt: Mapping[str, Any], dotted: str) -> Tuple[Optional[Mapping[str, Any]], str]:
    """The mapping that holds ``dotted``'s last key, and that key (None when a block on the way is missing)."""
    *blocks, key = dotted.split(".")
    for block in blocks:
        opt = opt.get(block) if isinstance(opt, Mapping) else None
    return (opt if isinstance(opt, Mapping) else None), key


#: every scalar run key of both trees, by key
RUN_OPTIONS: Registry[RunOption] = Registry("run option")


def run_option(option: RunOption) -> RunOption:
    """Register ``option`` in :data:`RUN_OPTIONS`."""
    return RUN_OPTIONS.register(option.key, option)


_VQA, _IQA = ("vqa",), ("iqa",)
for _o in (
    RunOption("name", str, "run name: the run folder runs/{name}/ and the checkpoint names (default: the option "
                           "file's name)"),
    RunOption("stype", str, "sample type of every branch (default: sama; the trees list the valid names)"),
    RunOption("num_epochs", int, "training epochs (of each split)", low=0),
    RunOption("l_num_epochs", int, "extra epochs the cosine horizon counts (the original's; 0 by default)", low=0,
              default=0, ignored_in=_IQA),
    RunOption("warmup_epochs", float, "epochs of linear learning-rate warm-up (IQA default 5)", low=0),
    RunOption("constant_epochs", float, "the original IQA schedule's constant phase (it has no effect there)",
              low=0, trees=_IQA, ignored_in=_IQA, nullable=True),
    RunOption("ema", bool, "evaluate and save an exponential moving average of the weights", default=True),
    RunOption("ema_decay", float, "EMA decay per step", low=0, high=1, default=0.999),
    RunOption("ema_warmup", bool, "EMA decay ramp min(decay, (1+t)/(10+t)) for short runs", default=False),
    RunOption("save_model", bool, "save the best checkpoint of each validation set", default=True),
    RunOption("seed", int, "random seed (VQA default 42, IQA 44442: the original's)", low=0),
    RunOption("split_seed", int, "finetuning: > 0 gives num_splits random 80/20 splits (the original's)",
              trees=_VQA),
    RunOption("num_splits", int, "random train/test splits (IQA default 10; VQA finetuning with split_seed > 0)",
              low=1),
    RunOption("train_batch_size", int, "training batch per process", low=1, trees=_VQA),
    RunOption("test_batch_size", int, "evaluation batch per process", low=1),
    RunOption("batch_size", int, "training batch per process (IQA default 64)", low=1, trees=_IQA),
    RunOption("train_num_workers", int, "loader worker processes for training", low=0, trees=_VQA),
    RunOption("test_num_workers", int, "loader worker processes for evaluation", low=0),
    RunOption("num_workers", int, "loader worker processes for training (IQA)", low=0, trees=_IQA),
    RunOption("prefetch_factor", int, "batches each loader worker prepares ahead", low=1, nullable=True),
    RunOption("pin_memory", bool, "pinned host memory for the loaders (default: on with CUDA)", nullable=True),
    RunOption("persistent_workers", bool, "keep loader workers alive between epochs", default=False),
    RunOption("load_path", str, "weights to start from (training) or to test: a checkpoint file", flag="--ckpt",
              flag_commands=("test",), metavar="FILE", nullable=True),
    RunOption("allow_partial_load", bool, "let load_path leave learnable tensors at their initial values",
              default=False),
    RunOption("trust_checkpoint", bool, "full unpickle of load_path (only for a file you trust: it can run code)",
              default=False, flag="--trust-checkpoint", flag_const=True,
              flag_help="unpickle the checkpoint fully (only a file you trust: it can run code)"),
    RunOption("init_fragment_bias_from_relative", bool, "K400 init: copy the relative bias tables into the "
                                                        "fragment tables (FAST-VQA's recipe)", trees=_VQA),
    RunOption("run_dir", str, "run folder (default runs/{name})"),
    RunOption("save_dir", str, "where checkpoints go (VQA default pretrained_weights/, IQA the run folder)"),
    RunOption("device", str, "cpu, cuda or cuda:N (default: CUDA when available)", flag="--device", nullable=True),
    RunOption("amp", (str, bool), "mixed precision: none or bf16 (bfloat16 autocast; losses stay fp32)",
              flag="--bf16", flag_const="bf16", nullable=True,
              flag_help="bfloat16 autocast for the model (losses stay fp32)"),
    RunOption("deterministic", bool, "deterministic kernels and per-item seeded sampling", default=False),
    RunOption("progress", bool, "tqdm progress bars", default=True, flag="--no-progress", flag_const=False,
              flag_help="no progress bars (for logs)"),
    RunOption("max_bad_steps", int, "non-finite training losses in a row before the run stops", low=1, default=10),
    RunOption("max_bad_fraction", float, "share of a data set's items that may be unreadable before the run stops",
              low=0, high=1, default=0.05),
    RunOption("stop_after_epochs", int, "save the resumable state and stop after N epochs (0: never)", low=0,
              flag="--stop-after-epochs", flag_commands=("train",), metavar="N", nullable=True),
    RunOption("plugins", (list, str), "Python files or modules to import first (they register sample types, "
                                      "backbones, data set types, label formats)", nullable=True),
    RunOption("loss", str, "training objective (IQA; default smooth_l1, the original's)", trees=_IQA),
    RunOption("lr_schedule", str, "learning rate after the warm-up (IQA; default constant, the original's)",
              trees=_IQA),
    RunOption("optimizer.lr", float, "head learning rate (AdamW)", low=0),
    RunOption("optimizer.backbone_lr_mult", float, "backbone learning rate = lr x this", low=0, default=0.1),
    RunOption("optimizer.wd", float, "AdamW weight decay", low=0, default=0.05),
    # keys of the original option files that change nothing here (accepted so those files load as they are)
    RunOption("need_upsampled", bool, "the original's feature flag (no effect)", trees=_VQA, ignored_in=_VQA,
              nullable=True),
    RunOption("need_feat", bool, "the original's feature flag (no effect)", trees=_VQA, ignored_in=_VQA,
              nullable=True),
    RunOption("need_fused", bool, "the original's feature flag (no effect)", trees=_VQA, ignored_in=_VQA,
              nullable=True),
):
    run_option(_o)


def run_option_keys(tree: str, top_level: bool = True) -> Tuple[str, ...]:
    """The keys of :data:`RUN_OPTIONS` a ``tree``'s option files may hold (``top_level``: only the first part of
    dotted keys, once: what the top level of a file may hold)."""
    keys = [k for k, o in RUN_OPTIONS.items() if tree in o.trees]
    if top_level:
        keys = list(dict.fromkeys(k.split(".")[0] for k in keys))
    return tuple(keys)


def block_keys(block: str) -> Tuple[str, ...]:
    """The table's keys inside ``block`` (e.g. ``optimizer``: ``lr``, ``backbone_lr_mult``, ``wd``)."""
    return tuple(k.split(".", 1)[1] for k in RUN_OPTIONS if k.startswith(block + "."))


def check_run_options(opt: Mapping[str, Any], tree: str) -> None:
    """Check every run option of ``tree`` present in ``opt`` (type, bounds, choices) against the table, and the
    ``amp`` spelling."""
    for key, option in RUN_OPTIONS.items():
        if tree in option.trees:
            option.check(opt)
    amp_mode(opt.get("amp"))  # its spellings (none / fp32 / bf16 / bfloat16, ...)


def ignored_options(opt: Mapping[str, Any], tree: str) -> List[str]:
    """The keys present in ``opt`` that ``tree`` accepts from the original files but does not use."""
    out = []
    for key, option in RUN_OPTIONS.items():
        parent, last = _parent(opt, key)
        if tree in option.ignored_in and parent is not None and last in parent:
            out.append(key)
    return out


# ----------------------------------------------------------------------------------------------- command line
def add_run_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of the table's options that ``command`` ("train", "test" or "score") offers, and ``--set``."""
    if command not in COMMAND_KINDS:
        raise ValueError(f"unknown command kind {command!r}; choose one of: {', '.join(COMMAND_KINDS)}")
    for key, option in RUN_OPTIONS.items():
        if option.flag is None or command not in option.flag_commands:
            continue
        const = str(option.flag_const).lower() if isinstance(option.flag_const, bool) else option.flag_const
        help_text = (f"{option.flag_help} (option {key}: {const})" if option.flag_help
                     else f"{option.help} (option {key})")
        dest = _dest(key)
        if option.flag_const is None:
            kind = option.kind[0] if isinstance(option.kind, tuple) else option.kind
            parser.add_argument(option.flag, dest=dest, type=kind, default=None, metavar=option.metavar,
                                help=help_text)
        else:
            parser.add_argument(option.flag, dest=dest, action="store_const", const=option.flag_const, default=None,
                                help=help_text)
    parser.add_argument("--set", dest="set_options", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="set any option of the file, nested keys dotted (repeatable), e.g. --set "
                             "optimizer.lr=3e-4; checked like the file and recorded in the run's options.yml")


def _dest(key: str) -> str:
    return "opt_" + key.replace(".", "__")


def flag_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """``{key: value}`` of the table's flags given on the command line (``a.b`` keys dotted)."""
    out: Dict[str, Any] = {}
    for key in RUN_OPTIONS:
        value = getattr(args, _dest(key), None)
        if value is not None:
            out[key] = value
    return out
