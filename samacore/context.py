"""The settings one training loop runs under (:class:`RunContext`), below the loop and above the resume state.

``samacore.trainer`` (the loop) takes a :class:`RunContext`; ``samacore.runs`` (the command line and run folders)
builds one from the options and the command line. Import order, top to bottom, with no cycle:
``runs -> trainer -> context -> resume -> checkpoint``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional, Union

from .options import OptionError
from .resume import RESUME_FILE, RunStopped, load_resume

__all__ = ["RunContext", "interrupted_message"]


@dataclass
class RunContext:
    """Per-invocation settings of a training loop (options + command line)."""

    progress: bool = True
    amp: Optional[str] = None                   # "bf16": autocast for training and evaluation
    state_path: Optional[str] = None            # the resumable state written each epoch ({run_dir}/last.pth)
    resume: Optional[Dict[str, Any]] = None     # a loaded state the next loop continues from
    stop_after: int = 0                         # stop (state saved) after this many epochs in this process; 0: never
    epochs_done: int = 0
    max_bad_steps: int = 10
    last_saved: Optional[str] = None            # what the last saved state follows ("epoch 3", "split 01 epoch 03")

    #: the context of the run this process is in (the Ctrl-C message says what it saved)
    current: ClassVar[Optional["RunContext"]] = None

    @classmethod
    def for_run(cls, opt: Mapping[str, Any], progress: bool, run_dir: str,
                resume: Union[None, str, Mapping[str, Any]] = None, command: str = "train",
                **extra: Any) -> "RunContext":
        """The settings of a run in ``run_dir``; ``resume``: a state :func:`samacore.runs.start_run` read, or the
        ``--resume`` target to read (refusing options that differ)."""
        ctx = cls(progress=progress, amp=opt.get("amp"), state_path=os.path.join(run_dir, RESUME_FILE),
                  stop_after=int(opt.get("stop_after_epochs") or 0), max_bad_steps=int(opt.get("max_bad_steps", 10)),
                  **extra)
        if resume:
            ctx.resume = dict(load_resume(resume, opt, command) if isinstance(resume, str) else resume)
            ctx.last_saved = f"epoch {int(ctx.resume['epoch'])}"
        RunContext.current = ctx
        return ctx

    def state_saved(self, epoch: int, where: str = "") -> None:
        """Note that the state after ``epoch`` was saved (``where``: e.g. ", at split 01 epoch 03")."""
        self.last_saved = where.strip(", ").removeprefix("at ") if where else f"epoch {epoch}"

    @property
    def run_folder(self) -> str:
        """The folder of the resumable state (what ``--resume`` takes)."""
        return os.path.dirname(self.state_path or "") or "RUN_FOLDER"

    def first_split(self, num_splits: int) -> int:
        """The split a resumed multi-split run continues at (0 when not resuming); the split counts must agree."""
        if self.resume is None:
            return 0
        if int(self.resume.get("num_splits", num_splits)) != num_splits:
            raise OptionError(f"--resume: the run has {self.resume['num_splits']} splits, these options {num_splits}")
        return int(self.resume.get("split", 0))

    def stops_after(self, epochs_done: int) -> bool:
        """Whether this process stops (``stop_after_epochs``) once it has done ``epochs_done`` epochs."""
        return bool(self.stop_after) and epochs_done >= self.stop_after

    def epoch_finished(self, epoch: int, num_epochs: int, more_after: bool = False, where: str = "") -> None:
        """Count an epoch; raise :class:`samacore.resume.RunStopped` once ``stop_after`` epochs are done and work
        remains (a later epoch, or ``more_after``: later splits). ``where`` is added to the message."""
        self.epochs_done += 1
        if self.stops_after(self.epochs_done) and (epoch < num_epochs - 1 or more_after):
            raise RunStopped(f"stopped after {self.epochs_done} epoch(s) as asked (stop_after_epochs){where}; "
                             f"continue with --resume {self.run_folder}")


def interrupted_message(command: str) -> str:
    """One line for Ctrl-C: after which epoch the resumable state was saved and the command that continues."""
    ctx = RunContext.current
    if ctx is None or ctx.state_path is None:
        return "interrupted (Ctrl-C)"
    folder = os.path.relpath(ctx.run_folder) if ctx.run_folder.startswith(os.getcwd() + os.sep) else ctx.run_folder
    if ctx.last_saved is None:
        return f"interrupted (Ctrl-C) before the first epoch finished: no state saved in {folder} yet"
    return (f"interrupted (Ctrl-C): the state after {ctx.last_saved} is saved in {folder}/{RESUME_FILE}; continue "
            f"with: {command} --resume {folder}")
