"""Thin helpers over torch.distributed so the trainers run the same with or without ``torchrun``.

* :func:`plan_device` decides the device and the process-group backend from the requested device, the
  launcher's environment and the number of visible CUDA devices (a pure function: tested without GPUs);
  :func:`init_distributed` carries the plan out.
* Failing together: a rank whose training or evaluation raises publishes the reason in the process group's
  store (:func:`failing_together`); the other ranks end within seconds with ``error: rank R failed: <reason>``,
  either when their next collective fails (gloo notices a peer that exited) or, when blocked in a collective
  that never returns, through a watcher thread that polls the store. The failing rank exits once they have read
  the reason (a counter in the store; at most :data:`READ_WAIT_S` s): torchrun stops the others when it exits.
* :func:`wrap_ddp` wraps a model in DistributedDataParallel with settings read off the model.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .options import OptionError

__all__ = ["RankFailed", "all_gather_list", "barrier", "cleanup", "collective_device", "failing_together",
           "first_batch_probe", "gpu_supported", "init_distributed", "is_dist", "is_main", "make_current",
           "plan_device", "plan_this_process", "rank", "refuse_unsupported_gpu", "unused_parameters", "world_size",
           "wrap_ddp"]

#: the store key a failing rank writes ``"R<TAB>reason"`` under
FAIL_KEY = "sama/failed"
#: a rank that failed (or saw a peer fail) is killed by SIGALRM if its teardown has not ended it after this long
EXIT_DEADLINE_S = 20
#: how often the watcher thread looks for a peer's failure, and how long it lets the main thread end by itself
WATCH_EVERY_S = 1.0
WATCH_GRACE_S = 3.0
#: the store counter of ranks that have read a published failure, and how long the failing rank waits for all
#: of them: its exit makes torchrun stop the others, which must have said why first
READ_KEY = "sama/failure-read"
READ_WAIT_S = WATCH_EVERY_S + WATCH_GRACE_S + 2.0
#: how long a rank that has said a peer's failure waits before it ends: the failing rank (done waiting for its
#: readers) ends first with its own report (its traceback, or its one line), which torchrun then names as the root
#: cause; ending first instead would make torchrun stop the failing rank before it said anything
PEER_EXIT_DELAY_S = 2.0


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


# ----------------------------------------------------------------------------------------------- device plan
DEVICE_CHOICES = "cpu, cuda or cuda:N"


def _requested_cuda_index(requested: str) -> Optional[int]:
    """``cuda`` -> None, ``cuda:N`` -> N; anything else but ``cpu`` is an OptionError."""
    if requested == "cuda":
        return None
    head, _, index = requested.partition(":")
    if head == "cuda" and index.isdigit():
        return int(index)
    raise OptionError(f"--device {requested!r} is not a device; allowed: {DEVICE_CHOICES}")


def plan_device(requested: Optional[str], env: Mapping[str, str], cuda_count: int) -> Tuple[str, Optional[str]]:
    """``(device, backend)`` of this process: a pure function of its inputs.

    ``requested``: ``--device`` / option ``device`` (None or "": automatic); ``env``: the launcher's variables
    (``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``); ``cuda_count``: the CUDA devices this process sees.
    Automatic and ``cuda`` take the process's own GPU: ``cuda:LOCAL_RANK``, or ``cuda:0`` when the launcher shows
    each process one GPU (Slurm's per-task binding: LOCAL_RANK > 0 with one visible device; never under torchrun,
    ``TORCHELASTIC_RUN_ID`` set, which shows every worker all GPUs of its node). ``cuda:N`` is honoured
    as asked, but not when several processes on this node would all land on GPU N. The backend is NCCL for a CUDA
    device and gloo for the CPU; None without a multi-process launch (WORLD_SIZE <= 1). Impossible requests
    (``cuda`` without CUDA, ``cuda:7`` of 2 devices, more processes than GPUs) are an :class:`OptionError`.
    """
    world, local_rank = int(env.get("WORLD_SIZE", 1) or 1), int(env.get("LOCAL_RANK", 0) or 0)
    local_world = int(env.get("LOCAL_WORLD_SIZE", 1) or 1)
    torchrun = bool(env.get("TORCHELASTIC_RUN_ID"))
    requested = (requested or "").strip().lower()
    if requested == "cpu" or (not requested and cuda_count == 0):
        device = "cpu"
    else:
        index = _requested_cuda_index(requested) if requested else None
        if cuda_count == 0:
            raise OptionError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if index is not None:
            if index >= cuda_count:
                raise OptionError(f"--device {requested}: this process sees {cuda_count} CUDA device(s); allowed: "
                                  f"cpu, cuda, cuda:0 .. cuda:{cuda_count - 1}")
            if world > 1 and local_world > 1:
                raise OptionError(f"--device {requested} under torchrun would put all {local_world} processes of this "
                                  f"node on GPU {index}; use --device cuda (each process takes its LOCAL_RANK's GPU)")
        elif torchrun and local_world > cuda_count:  # torchrun shows every worker all of the node's GPUs
            raise OptionError(f"torchrun started {local_world} processes on this node but only {cuda_count} CUDA "
                              f"device(s) are visible: use --nproc_per_node {cuda_count} at most, or --device cpu")
        elif cuda_count == 1:
            index = 0  # one visible GPU per process (Slurm's per-task binding) or a single process: its GPU
        elif local_rank < cuda_count:
            index = local_rank
        else:
            raise OptionError(f"LOCAL_RANK {local_rank} but only {cuda_count} CUDA devices are visible: start at most "
                              f"{cuda_count} processes per node, or use --device cpu")
        device = f"cuda:{index}"
    backend = None if world <= 1 else ("nccl" if device.startswith("cuda") else "gloo")
    return device, backend


def plan_this_process(requested: Optional[str]) -> Tuple[str, Optional[str]]:
    """:func:`plan_device` with this process's environment and visible CUDA devices (counting them starts no
    CUDA context)."""
    return plan_device(requested, os.environ, torch.cuda.device_count())


def init_distributed(device: str = "cpu", backend: Optional[str] = None) -> Tuple[int, int, int]:
    """Make ``device`` the current CUDA device (so pinned memory and NCCL use it, not GPU 0) and initialise the
    process group with ``backend`` (from :func:`plan_device`; None: no process group); returns (rank, world,
    local_rank). Under a process group a watcher thread ends this rank when another rank fails."""
    make_current(device)
    if backend is not None and not is_dist():
        dist.init_process_group(backend=backend)
        _start_failure_watcher()
    elif backend is not None and dist.get_backend() != backend:
        # `--resume RUN` starts the group before the run's options are read, from the command line's --device
        raise OptionError(f"device {device} needs the {backend} backend, but this command's processes were started "
                          f"with {dist.get_backend()} for another device: give --device {device.split(':')[0]} on "
                          f"the command line")
    return rank(), world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def make_current(device: str) -> None:
    """A GPU ``device`` becomes the current CUDA device (pinned memory and kernels land on it, not on GPU 0), once
    this PyTorch is known to run on it (:func:`refuse_unsupported_gpu`); the CPU: nothing to do."""
    if device.startswith("cuda"):
        refuse_unsupported_gpu(device)
        torch.cuda.set_device(torch.device(device))


def gpu_supported(capability: Tuple[int, int], arch_list: List[str]) -> bool:
    """Whether a PyTorch build with kernels for ``arch_list`` (``torch.cuda.get_arch_list()``: ``sm_80``,
    ``sm_90a``, ``compute_120`` ...) runs on a GPU of compute ``capability``: a cubin ``sm_XY`` runs on X.Y' with
    Y' >= Y (``sm_XYa``: on X.Y only), PTX ``compute_XY`` on anything from X.Y up. A list without CUDA names
    (empty, or ROCm's ``gfx...``): not judged, True."""
    known = False
    for arch in arch_list:
        parsed = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", arch)
        if parsed is None:  # (ROCm's gfx... names: not judged here)
            continue
        known = True
        kind, major, minor, suffix = parsed.groups()
        built = (int(major), int(minor))
        if kind == "compute" and capability >= built:
            return True
        if kind == "sm" and capability[0] == built[0] and (capability[1] == built[1] if suffix else
                                                            capability[1] >= built[1]):
            return True
    return not known


def refuse_unsupported_gpu(device: str) -> None:
    """One line instead of "no kernel image is available" at the first kernel: ``device``'s GPU is older (or
    newer) than every architecture this PyTorch build has kernels for (e.g. a V100, 7.0, with a CUDA 13 build)."""
    index = torch.device(device).index or 0
    capability, arch_list = torch.cuda.get_device_capability(index), torch.cuda.get_arch_list()
    if not gpu_supported(capability, arch_list):
        raise OptionError(f"--device {device}: {torch.cuda.get_device_name(index)} (compute capability "
                          f"{capability[0]}.{capability[1]}) is not supported by this PyTorch {torch.__version__} "
                          f"(kernels for {', '.join(arch_list)}): install a PyTorch build for it, or use --device cpu")


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_list(items: List[Any]) -> List[Any]:
    """Concatenate a Python list from every rank, in rank order (for exact metrics over the whole set)."""
    if not is_dist():
        return list(items)
    gathered: List[List[Any]] = [None] * world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]


def cleanup() -> None:
    if is_dist():
        _WATCHER_STOP.set()
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- failing together
class RankFailed(SystemExit):
    """Another rank failed: this one ends with ``error: rank R failed: <reason>`` (exit status 1, no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def _store() -> Any:
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def published_failure() -> Optional[str]:
    """``"rank R failed: reason"`` of another rank that published its failure; None if none did (or no store)."""
    try:
        store = _store()
        if not store.check([FAIL_KEY]):
            return None
        who, _, reason = store.get(FAIL_KEY).decode("utf-8", "replace").partition("\t")
    except Exception:  # the store went away with its host: nothing to report from here
        return None
    return None if int(who) == rank() else f"rank {who} failed: {reason}"


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _exit_by(deadline_s: int) -> None:
    """Let the kernel end this process after ``deadline_s`` s if its teardown hangs (NCCL, worker processes)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(deadline_s)


@contextlib.contextmanager
def failing_together() -> Iterator[None]:
    """Under a process group: an exception in the body is either a consequence of another rank's published
    failure (then :class:`RankFailed` with that reason) or this rank's own, which is published for the others
    before it propagates. Either way the process is ended within :data:`EXIT_DEADLINE_S` s. Ctrl-C and exits pass
    through untouched."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        if not is_dist():
            raise
        peer = published_failure() or _wait_for_peer_failure(error)
        _exit_by(EXIT_DEADLINE_S)
        if peer is not None:
            _count_as_read()
            time.sleep(PEER_EXIT_DELAY_S)
            raise RankFailed(peer) from None
        try:
            _store().set(FAIL_KEY, f"{rank()}\t{_reason(error)}")
            _wait_until_read()
        except Exception:
            pass  # the store's host is gone: the others learn from their collectives
        raise


def _count_as_read() -> None:
    try:
        _store().add(READ_KEY, 1)
    except Exception:  # the store went away with its host
        pass


def _wait_until_read() -> None:
    """Until every other rank has read this rank's published failure (at most :data:`READ_WAIT_S` s): once it
    exits, torchrun stops the others, and one still blocked in a collective would end without saying why."""
    store, end = _store(), time.monotonic() + READ_WAIT_S
    while store.add(READ_KEY, 0) < world_size() - 1 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.5)  # a reader counts itself just before it prints and exits


def _wait_for_peer_failure(error: BaseException, wait_s: float = 2.0) -> Optional[str]:
    """A collective error (a peer closed its connection) may arrive just before the peer's reason: wait briefly."""
    if not any(word in str(error).lower() for word in ("connection", "peer", "gloo", "nccl", "closed")):
        return None
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        peer = published_failure()
        if peer is not None:
            return peer
        time.sleep(0.1)
    return None


_WATCHER_STOP = threading.Event()


def _start_failure_watcher() -> None:
    """A daemon thread that ends this process with the peer's reason when another rank published a failure and
    this one has not ended by itself within :data:`WATCH_GRACE_S` s (e.g. waiting in an NCCL collective)."""
    _WATCHER_STOP.clear()

    def watch() -> None:
        while not _WATCHER_STOP.wait(WATCH_EVERY_S):
            peer = published_failure()
            if peer is not None:
                time.sleep(WATCH_GRACE_S)
                print(f"error: {peer}", file=sys.stderr, flush=True)
                _count_as_read()
                time.sleep(PEER_EXIT_DELAY_S)
                os._exit(1)

    threading.Thread(target=watch, name="sama-failure-watcher", daemon=True).start()


# ----------------------------------------------------------------------------------------------- DDP
def unused_parameters(model: nn.Module, probe: Callable[[nn.Module], torch.Tensor]) -> List[str]:
    """Names of the trainable parameters that get no gradient from ``probe(model)`` (a loss computed from one
    batch); collective under a process group (a parameter counts as used if any rank used it). The model's
    gradients and buffers and every random generator are left as they were, so the probe changes no value."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    with _rng_kept():
        probe(model).backward()
    used = torch.tensor([p.grad is not None for _, p in params], dtype=torch.float32)
    for _, p in params:
        p.grad = None
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
    if is_dist():
        used = used.to(collective_device())
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
    return [n for (n, _), u in zip(params, used.tolist()) if not u]


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    import random

    import numpy as np

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def collective_device() -> torch.device:
    """The device collectives use: the current CUDA device under NCCL, the CPU otherwise (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _has_running_stats(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats for m in model.modules())


def first_batch_probe(step_fn: Callable[[nn.Module, Any, str], Tuple[torch.Tensor, Any, Any]], loader: Any,
                      device: str, amp: Optional[str] = None) -> Callable[[nn.Module], torch.Tensor]:
    """A probe for :func:`wrap_ddp`: the training-mode loss ``step_fn`` gives on ``loader``'s first batch.

    The loader's generator (its workers' seeds) is put back afterwards, so the epochs draw what they would have.
    """
    from .precision import autocast

    def probe(model: nn.Module) -> torch.Tensor:
        generator = getattr(loader, "generator", None)
        kept = generator.get_state() if generator is not None else None
        was_training = model.training
        model.train()
        try:
            with autocast(device, amp):
                return step_fn(model, next(iter(loader)), device)[0]
        finally:
            model.train(was_training)
            if kept is not None:
                generator.set_state(kept)

    return probe


def wrap_ddp(model: nn.Module, probe: Optional[Callable[[nn.Module], torch.Tensor]] = None,
             find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel, with settings read off the model.

    ``probe(model) -> loss`` (one training step's loss of one batch) finds the parameters the model never uses
    (ConvNeXt's ``head.norm``, the ``fc_norm`` of avg-pool ViTs: timm's ``forward_features`` leaves them out);
    they are frozen (``requires_grad=False``: they would get no gradient anyway, so training is unchanged) and
    DDP runs without ``find_unused_parameters``, which would search the autograd graph at every step.
    ``find_unused_parameters=True`` keeps that search, for models whose used parameters change from step to
    step. Buffers are broadcast from rank 0 at every step only when the model has running statistics
    (BatchNorm): the models here have only constant buffers (Swin's ``relative_position_index``), which
    DDP would otherwise re-send every step for nothing.
    """
    if probe is not None and not find_unused_parameters:
        unused = set(unused_parameters(model, probe))
        for name, p in model.named_parameters():
            if name in unused:
                p.requires_grad_(False)
        if unused and is_main():
            print(f"DDP: {len(unused)} parameter tensor(s) get no gradient and are frozen: "
                  f"{', '.join(sorted(unused)[:4])}{' ...' if len(unused) > 4 else ''}", file=sys.stderr)
    sync = {_BUFFER_SYNC_ARG: _has_running_stats(model)}
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **sync)


# torch 2.14 renamed DDP's broadcast_buffers (the old name warns)
_BUFFER_SYNC_ARG = ("forward_sync_buffers" if "forward_sync_buffers" in
                    inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters else "broadcast_buffers")
