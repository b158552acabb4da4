"""Resuming runs: everything a resumed run needs to continue exactly where an uninterrupted run would be.

:class:`TrainState` saves (atomically, at the end of every epoch, to ``{run_dir}/last.pth``) and restores the
model, EMA, optimiser, scheduler, best trackers, logged rows, bad-step count and every RNG, plus what the
command adds (the split index and the finished splits' results); :func:`load_resume` reads such a state and
refuses options that differ from the run's. With ``deterministic: true`` a resumed run ends with the same
metrics as an uninterrupted one.
"""
from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from . import distributed as D
from .checkpoint import (RESUME_FORMAT, CheckpointError, ctrl_c_held, load_checkpoint, load_on_main,
                         load_state_dict_checked, plain_options, save_checkpoint)
from .ema import unwrap
from .metrics import BestTracker
from .options import OptionError
from .robust import BadItemLog
from .runlog import RunLogger, get_logger
from .utils import seed_everything

if TYPE_CHECKING:  # types only: the loop (trainer, engine) sits above this module
    from .engine import BadStepGuard

__all__ = ["RESUME_FILE", "RESUME_HARMLESS_KEYS", "RunStopped", "TrainState", "bad_log_state", "load_resume",
           "options_diff", "restore_bad_log", "restore_log_rows", "resume_path", "run_options_text"]

log = get_logger("samacore")

RESUME_FILE = "last.pth"
# Options that may differ between a run and its resumption without changing the results.
RESUME_HARMLESS_KEYS = ("progress", "device", "stop_after_epochs", "train_num_workers", "test_num_workers",
                        "num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "run_dir", "save_dir",
                        "trust_checkpoint", "max_bad_fraction")


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
    a = _flatten({k: v for k, v in plain_options(saved).items() if k not in ignore})
    b = _flatten({k: v for k, v in plain_options(current).items() if k not in ignore})
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
                command: Optional[str] = None, tree: Optional[str] = None) -> Dict[str, Any]:
    """Read a resumable state (run folder or ``last.pth``) and check that it continues ``opt``'s run.

    Read on rank 0 and broadcast (:func:`samacore.checkpoint.load_on_main`: nodes need not share the run folder).
    Stale temporary files of an interrupted save (``.tmp-*.pth``) beside it are removed. Raises
    :class:`CheckpointError` for files that are not resumable states (e.g. a best-model checkpoint) or that were
    written by another ``command`` or ``tree`` ("vqa" / "iqa"), and :class:`OptionError` naming the options that
    differ from the run's (but for :data:`RESUME_HARMLESS_KEYS`).
    """
    return load_on_main(lambda: _read_resume(run_or_checkpoint, opt, command, tree))


def check_origin(path: str, state: Mapping[str, Any], command: Optional[str], tree: Optional[str]) -> None:
    """A state saved by the other tree or another command is refused as such, before its options are read as this
    command's (which would name option keys the user never wrote)."""
    meta = state.get("sama")
    saved_tree = meta.get("tree") if isinstance(meta, Mapping) else None
    if tree is not None and saved_tree not in (None, tree):
        raise CheckpointError(f"{path} was saved by the {saved_tree.upper()} {state.get('command') or 'train'} "
                              f"command; it cannot resume {tree.upper()} {command or 'training'}: resume it with the "
                              f"{saved_tree.upper()} tree's command")
    if command is not None and state.get("command") not in (None, command):
        raise CheckpointError(f"{path} was saved by the {state.get('command')} command; it cannot resume {command}")


def _read_resume(run_or_checkpoint: str, opt: Optional[Mapping[str, Any]], command: Optional[str],
                 tree: Optional[str]) -> Dict[str, Any]:
    path = resume_path(run_or_checkpoint)
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or state.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a resumable training state (those are the {RESUME_FILE} files in "
                              "run folders; model checkpoints such as *_s_dev_v0.0.pth hold weights only)")
    check_origin(path, state, command, tree)
    if opt is not None and state.get("options"):
        diff = options_diff(yaml.safe_load(state["options"]), opt)
        if diff:
            raise OptionError(f"--resume {run_or_checkpoint}: these options differ from the run's: {'; '.join(diff)}; "
                              "resume with the run's own options (leave out -o: the run folder holds them) or start "
                              "a new run")
    folder = os.path.dirname(path)
    for f in os.listdir(folder):
        if f.startswith(".tmp-") and f.endswith(".pth"):
            log.warning("removing %s (left by a save that was interrupted)", os.path.join(folder, f))
            os.remove(os.path.join(folder, f))
    state = dict(state)
    state["_path"] = path
    return state


def run_options_text(run_or_checkpoint: str, command: Optional[str] = None, tree: Optional[str] = None) -> str:
    """The options (YAML) of the run a ``--resume`` target continues: its resumable state's ``options`` (a state
    of another ``command`` or ``tree`` is refused, :func:`check_origin`). Read on rank 0 and broadcast."""
    def read() -> str:
        path = resume_path(run_or_checkpoint)
        state = load_checkpoint(path)
        if not isinstance(state, Mapping) or state.get("format") != RESUME_FORMAT or not state.get("options"):
            raise CheckpointError(f"{path} is not a resumable training state holding its run's options (those are the "
                                  f"{RESUME_FILE} files in run folders); give the option file with -o")
        check_origin(path, state, command, tree)
        return str(state["options"])

    return load_on_main(read)


class TrainState:
    """Everything a resumed run must restore, saved atomically at the end of each epoch.

    Holds references to the live objects; :meth:`save` writes ``{"format", "command", "epoch", "model", "ema",
    "ema_updates" (the EMA's update count: its warm-up continues), "optimizer", "scheduler", "best", "best_saved", "log_rows", "bad_steps", "rng" (per rank), "world_size",
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
        best: Optional[Any] = None,  # a samacore.trainer.BestCheckpointer
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
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_updates": int(self.ema.updates) if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "best": {k: t.state_dict() for k, t in self.best.trackers.items()} if self.best is not None else {},
            "best_saved": dict(self.best.saved) if self.best is not None else {},
            "log_rows": [dict(r) for r in self.run_logger.rows] if self.run_logger is not None else [],
            "bad_steps": self.guard.in_a_row if self.guard is not None else 0,
            "rng": rng,
            "options": yaml.safe_dump(plain_options(self.opt), sort_keys=False) if self.opt is not None else "",
        }
        state.update(extra)
        return state

    def save(self, path: str, epoch: int, on_saved: Callable[[], None] = lambda: None, **extra: Any) -> None:
        """Atomically write :meth:`state_dict` to ``path`` (rank 0), then ``on_saved()``; every rank must call it.

        A Ctrl-C that comes meanwhile takes effect after both (:func:`samacore.checkpoint.ctrl_c_held`), so what
        ``on_saved`` notes (the run context's last saved epoch, named by the Ctrl-C message) is the file that is
        there; not held over the barrier, where another rank may hang."""
        state = self.state_dict(epoch, **extra)
        with ctrl_c_held():
            if D.is_main():
                save_checkpoint(state, path)
            on_saved()
        D.barrier()

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load ``state`` into the live objects; returns the first epoch still to run (``state["epoch"] + 1``)."""
        load_state_dict_checked(unwrap(self.model), state["model"], what=f"resumed model of {state.get('_path', 'the state')}")
        if self.ema is not None:
            if state.get("ema") is None:
                raise CheckpointError("the resumed state has no EMA weights but this run uses ema: true")
            self.ema.load_state_dict(state["ema"])
            self.ema.updates = _ema_updates(state, self.ema, self.scheduler)
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
            seed_everything(seed)
        return int(state["epoch"]) + 1


def _ema_updates(state: Mapping[str, Any], ema: Any, scheduler: Optional[Any]) -> int:
    """The EMA update count of a resumed state; a state saved before the count was kept gets the scheduler's step
    count (one EMA update per step but for skipped non-finite steps), with a warning when the EMA warms up."""
    if "ema_updates" in state:
        return int(state["ema_updates"])
    steps = int(getattr(scheduler, "last_epoch", 0) or 0)
    if ema.warmup and D.is_main():
        log.warning("the resumed state has no EMA update count (saved by an older version): the EMA warm-up "
                    "continues from the scheduler's step count, %d", steps)
    return steps


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


def bad_log_state(bad_log: BadItemLog) -> Dict[str, Any]:
    """The bad items a run has met (saved in its state, so a resumed run does not read them again)."""
    return {"reasons": dict(bad_log.reasons), "where": {k: list(v) for k, v in bad_log.where.items()},
            "per_set": {k: sorted(v) for k, v in bad_log.per_set.items()}}


def restore_bad_log(bad_log: BadItemLog, state: Optional[Mapping[str, Any]]) -> None:
    """Put back what :func:`bad_log_state` saved (rank 0's list; other ranks keep their own files)."""
    if not state or not D.is_main():
        return
    bad_log.reasons.update(state.get("reasons", {}))
    for k, v in state.get("where", {}).items():
        bad_log.where.setdefault(k, []).extend(x for x in v if x not in bad_log.where.get(k, []))
    for k, v in state.get("per_set", {}).items():
        bad_log.per_set.setdefault(k, set()).update(v)
    bad_log.write()
