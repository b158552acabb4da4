"""How every command starts: Ctrl-C while PyTorch is being imported ends in one line, not a traceback.

Importing PyTorch (and through the trees timm, decord, ...) takes a second or two before a command does anything;
a Ctrl-C then surfaced as Python's ``KeyboardInterrupt`` traceback from deep inside torch. Each script
(``VQA/vqa.py``, ``IQA/demo_train_iqa_baseline.py``, ...) and each console command (``sama-vqa``, ...) runs its
command through :func:`launch`, which imports the command under :func:`starting`. This module imports the standard
library only, so it is in place within milliseconds of the interpreter's start. :func:`launch` also keeps Python's
garbage collector off those imports (:func:`imports_uncollected`): 0.15-0.4 s of every command's start.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator

__all__ = ["COMMANDS", "imports_uncollected", "launch", "sigint_handled", "starting"]

#: exit status of a command stopped by Ctrl-C, at any time (128 + SIGINT, as a shell reports it)
INTERRUPTED_STATUS = 130
STARTING_MESSAGE = "interrupted (Ctrl-C) while starting: nothing was done"

#: console command -> the function it runs (``module:function``), also run by the script named in the comment
COMMANDS = {
    "sama-vqa": "samavqa.score:main",                    # VQA/vqa.py
    "sama-iqa": "samaiqa.score:main",                    # IQA/iqa.py
    "sama-train-vqa": "samavqa.cli:train_command",       # VQA/demo_train.py
    "sama-finetune-vqa": "samavqa.cli:finetune_command",  # VQA/demo_finetune.py
    "sama-test-vqa": "samavqa.cli:test_command",         # VQA/demo_test.py
    "sama-train-iqa": "samaiqa.cli:train_command",       # IQA/demo_train_iqa_baseline.py
    "sama-test-iqa": "samaiqa.cli:test_command",         # IQA/demo_test_iqa.py
    "sama-export-vqa": "samavqa.export_onnx:main",       # VQA/export_onnx.py
    "sama-export-iqa": "samaiqa.export_onnx:main",       # IQA/export_onnx.py
}


@contextlib.contextmanager
def sigint_handled(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """SIGINT (Ctrl-C) goes to ``handler`` while the block runs; afterwards the handler that was there is back.
    Nothing changes outside the main thread (only it receives signals) or where SIGINT is ignored (a background
    job, which must stay deaf to it)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN, None):
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """Within the block, Ctrl-C prints :data:`STARTING_MESSAGE` and exits with status 130; afterwards the handler
    that was there is back (Python's, which the commands turn into their own one-line messages)."""
    def stop(signum: int, frame: Any) -> None:
        print(STARTING_MESSAGE, file=sys.stderr)
        raise SystemExit(INTERRUPTED_STATUS)

    with sigint_handled(stop):
        yield


@contextlib.contextmanager
def imports_uncollected() -> Iterator[None]:
    """Python's cyclic garbage collector is off while the block imports; when it ends, what the imports made is
    frozen (:func:`gc.freeze`: the collector leaves those objects alone from then on) and the collector is on or
    off as it was before.

    Why: importing PyTorch and the trees makes a few hundred thousand objects that live as long as the process.
    The collector walks them again and again while they are being made (measured here: 0.15-0.4 s of the 1.3 s a
    scoring command spends importing), then at every full collection, and once more when the interpreter ends
    (0.3-0.4 s of a training or test command's end; the scoring commands skip that teardown). Frozen objects are
    still freed when nothing refers to them; only reference cycles among them stay until the process ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def launch(target: str) -> Any:
    """Import ``module:function`` under :func:`starting` (PyTorch first: decord imported before it can hang) and
    :func:`imports_uncollected`, and return what the function returns."""
    module, function = target.split(":")
    with starting(), imports_uncollected():
        import torch  # noqa: F401

        fn = getattr(importlib.import_module(module), function)
    return fn()


def _command(name: str):
    def run() -> Any:
        return launch(COMMANDS[name])

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    run.__doc__ = f"The console command ``{name}``: :func:`launch` of ``{COMMANDS[name]}``."
    return run


# the console commands' entry points (pyproject.toml [project.scripts]: sama-vqa = "samacore.startup:sama_vqa")
sama_vqa = _command("sama-vqa")
sama_iqa = _command("sama-iqa")
sama_train_vqa = _command("sama-train-vqa")
sama_finetune_vqa = _command("sama-finetune-vqa")
sama_test_vqa = _command("sama-test-vqa")
sama_train_iqa = _command("sama-train-iqa")
sama_test_iqa = _command("sama-test-iqa")
sama_export_vqa = _command("sama-export-vqa")
sama_export_iqa = _command("sama-export-iqa")
