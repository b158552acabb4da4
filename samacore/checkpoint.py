"""Checkpoint I/O: safe loading (``weights_only=True``), atomic saving and checked state-dict loading.

:func:`load_checkpoint` is the one reader of every loader (VQA, IQA, resume, scoring). It unpickles with
``weights_only=True`` plus the numpy objects the original training scripts store beside the weights (their
``validation_results`` hold numpy float64 scalars), under numpy 1.x and 2.x module names. Anything else a file
refers to is refused with one line naming it; ``trust=True`` (option ``trust_checkpoint``, flag
``--trust-checkpoint``) does a full unpickle instead, for files the user trusts. Files that are not PyTorch
checkpoints at all (text, an HTML error page, random bytes) or that were cut short are named as such. A
training run's resume state (``last.pth``) given where model weights are expected (``as_weights``) stands for its
weights.

Every file :func:`save_checkpoint` writes holds CPU tensors (a file saved on a GPU loads on a CPU-only host) and,
for a dict, ``"checksum"``: CRC-32 of its tensors' bytes in key order (:func:`tensor_checksum`); a file whose
tensors no longer match it is refused as damaged. Released files without one load as before. The project's
checkpoints also say what they are: ``"sama"`` (:func:`checkpoint_meta`: tree, the full options, what scoring
needs). Under torchrun only global rank 0 writes them, and :func:`load_on_main` reads them back there for every
rank (nodes need not share a file system).
"""
from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import pickle
import re
import signal
import struct
import sys
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

import numpy as np
import torch
import yaml
from torch import nn

from . import distributed as D
from .startup import sigint_handled


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


#: ``format`` of the resumable training states (``runs/{name}/last.pth``, :mod:`samacore.resume`)
RESUME_FORMAT = "sama-resume-1"

#: version of the ``"sama"`` description stored in the project's checkpoints (:func:`checkpoint_meta`)
META_VERSION = 1
#: the key of the stored checksum (:func:`tensor_checksum`)
CHECKSUM_KEY = "checksum"
#: said whenever weights do not fit the model's shapes
SHAPE_HINT = ("the checkpoint was trained with other model options; pass the option file it was trained with "
              "(--options / -o), or a checkpoint made for these options")

TRUST_FLAG_HELP = ("load the checkpoint with a full unpickle instead of weights-only loading; only for a file you "
                   "trust, since unpickling can run code from it")
TRUST_HINT = ("if you trust the file, set the option trust_checkpoint: true or pass --trust-checkpoint for a full "
              "unpickle (which can run code from the file)")


def _numpy_safe_globals() -> list:
    """The numpy objects a pickled numpy scalar needs, as :func:`torch.serialization.safe_globals` entries.

    A scalar pickles as ``<multiarray>.scalar(numpy.dtype(code), raw bytes)``; the module of ``scalar`` is
    ``numpy.core.multiarray`` when numpy 1.x wrote the file and ``numpy._core.multiarray`` under numpy 2.x, so
    the one function is registered under both names. Restoring a dtype's state needs its class (numpy 2 names
    them ``numpy.dtypes.Float64DType`` etc.): the classes of every boolean, integer and float dtype.
    """
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    codes = "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]
    dtype_classes = sorted({type(np.dtype(c)) for c in codes}, key=lambda t: t.__qualname__)
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *dtype_classes]


_NUMPY_SAFE_GLOBALS = _numpy_safe_globals()
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # torch.save's pre-1.6 format: a protocol-2 pickle of a 10-byte magic number
_REFUSED = (re.compile(r"GLOBAL ([\w.]+) was not an allowed global"), re.compile(r"but got <class '([\w.]+)'>"))


def _what_bytes_are(head: bytes) -> str:
    """A few words saying what a file that is not a PyTorch checkpoint is, from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (unpack it first)"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file (not supported: save the state dict with torch.save)"
    if head[:1] == b"\x80":
        return "a Python pickle that torch.save did not write"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        if text.startswith("version https://git-lfs"):
            return "a Git LFS pointer, not the weights (fetch them with `git lfs pull`)"
        if text.lstrip().lower().startswith(("<!doctype html", "<html")):
            return "an HTML page (a failed download?)"
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"a text file (it starts with {first!r})"
    return f"binary data starting with bytes {head[:8].hex(' ')}"


def _sniff(path: str) -> str:
    """``"zip"`` or ``"pre-1.6"``, the two layouts torch.save writes; CheckpointError for anything else,
    including a zip archive cut short (its central directory, written last, is missing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is a truncated PyTorch checkpoint ({os.path.getsize(path)} bytes, the end "
                                  "of its zip archive is missing): download or copy it again")
        return "zip"
    if head.startswith(_LEGACY_MAGIC):
        return "pre-1.6"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint: it is {_what_bytes_are(head)}")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _refused_global(e: BaseException) -> Optional[str]:
    """The name of the global a weights-only unpickle refused, from PyTorch's message (None if not that)."""
    for pattern in _REFUSED:
        m = pattern.search(str(e))
        if m:
            return m.group(1)
    return None


def _could_exist(name: str) -> bool:
    """False for a global name that cannot be real: not a dotted name, or missing from a module already imported
    (a pickle cut or damaged inside the name). Other modules are not imported to check (that would run code)."""
    parts = name.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return False
    module = sys.modules.get(".".join(parts[:-1]))
    if module is None:
        return True
    try:
        inspect.getattr_static(module, parts[-1])
    except AttributeError:
        return False
    return True


def _weights_only_reason(e: BaseException) -> BaseException:
    """PyTorch wraps the unpickler's own reason in a long preamble; keep the reason."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    return type(e)(text.split(marker, 1)[1]) if marker in text else e


def _load_error(path: str, layout: str, e: Exception, trust: bool) -> CheckpointError:
    """One line saying why ``torch.load`` failed on a file that starts like a PyTorch checkpoint."""
    refused = None if trust else _refused_global(e)
    if refused and _could_exist(refused):
        return CheckpointError(f"{path}: weights-only loading refused {refused} (it allows tensors, plain containers "
                               f"and numpy scalars); {TRUST_HINT}")
    if isinstance(e, ImportError) or (trust and isinstance(e, AttributeError)):
        return CheckpointError(f"{path}: unpickling it needs code that is not installed here ({_first_line(e)})")
    if isinstance(e, pickle.UnpicklingError) and "WeightsUnpickler" in str(e) and not refused:
        return CheckpointError(f"{path}: weights-only loading failed ({_first_line(_weights_only_reason(e))}): the "
                               f"file is damaged, or holds what only a full unpickle reads; {TRUST_HINT}")
    cut = isinstance(e, (EOFError, struct.error)) or "truncated" in str(e) or "EOF" in str(e)
    return CheckpointError(f"{path} is a {'truncated' if cut else 'damaged'} PyTorch checkpoint ({layout} format; "
                           f"{_first_line(_weights_only_reason(e))}): download or copy it again")


def load_checkpoint(path: str, map_location: Any = "cpu", trust: bool = False, as_weights: bool = False) -> Any:
    """Load a checkpoint so that an untrusted file cannot run code (see the module docstring).

    Args:
        path: a file written by ``torch.save`` (zip or pre-1.6 format).
        map_location: as :func:`torch.load`.
        trust: full unpickle (``weights_only=False``) for a file the user trusts; a warning says so.
        as_weights: the caller wants model weights: a training run's resume state (``last.pth``) then becomes
            ``{"state_dict": weights, "sama": ...}``, its EMA weights where the run kept an EMA (those are the
            ones it validated and saved) and the run's options and test sampling as a model file carries them
            (``sama``), with a warning saying so. Without it, a resume state is returned as it is.

    Raises:
        CheckpointError: one line naming the file and what is wrong: missing, not a PyTorch checkpoint (and what
            it is), truncated or damaged, or holding an object that weights-only loading refuses (named, with
            how to opt in).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    layout = _sniff(path)
    if trust:
        print(f"warning: {path}: full unpickle (trust_checkpoint): the file may run code", file=sys.stderr)
    try:
        if trust:
            obj = torch.load(path, map_location=map_location, weights_only=False)
        else:
            with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
                obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for damaged files: each becomes one line
        raise _load_error(path, layout, e, trust) from None
    _verify_checksum(path, obj)
    if not (as_weights and isinstance(obj, Mapping) and obj.get("format") == RESUME_FORMAT):
        return obj
    which = "EMA" if obj.get("ema") is not None else "model"
    print(f"warning: {path} is the resume state of a training run (after epoch {obj.get('epoch')}): using its "
          f"{which} weights", file=sys.stderr)
    weights = {"state_dict": obj["ema"] if which == "EMA" else obj["model"]}
    if isinstance(obj.get("sama"), Mapping):  # the run's options and test sampling, as a model file carries them
        weights["sama"] = obj["sama"]
    return weights


#: key prefixes that wrappers add to every key of a saved state dict: DistributedDataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> Dict[str, Any]:
    """``state`` without the prefixes of :data:`WRAPPER_PREFIXES` that every key carries (a state dict saved from a
    DDP- or compile-wrapped model), nested wrappers included; other state dicts as they are."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(str(k).startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def patch_embedding_rank(state: Mapping[str, Any]) -> Optional[int]:
    """Rank of the Swin patch-embedding kernel in a state dict: 5 for a video (3D) Swin, 4 for an image Swin,
    None without one. It tells the trees' checkpoints apart whatever their key prefixes."""
    for key, value in state.items():
        if str(key).endswith("patch_embed.proj.weight") and isinstance(value, torch.Tensor):
            return value.dim()
    return None


#: where the pretraining weights the option files name come from (pretrained_weights/README.md lists them all)
PRETRAINED_DOWNLOADS = {
    "swin_tiny_patch244_window877_kinetics400_1k.pth":
        "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/swin_tiny_patch244_window877_kinetics400_1k.pth",
    "swinv2_tiny_patch4_window8_256.pth":
        "https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth",
}


def download_hint(path: str) -> str:
    """``"; download it from URL ..."`` for a pretraining weight file of :data:`PRETRAINED_DOWNLOADS`, else ``""``."""
    url = PRETRAINED_DOWNLOADS.get(os.path.basename(str(path)))
    return f"; download it from {url} into pretrained_weights/ (see pretrained_weights/README.md)" if url else ""


T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def load_on_main(read: Callable[[], T]) -> T:
    """``read()`` on global rank 0 only, its result broadcast to every rank (under torchrun; else just ``read()``).

    Only rank 0 writes checkpoints and run files, and nodes need not share a file system, so what they wrote is
    read there. An exception of ``read`` is broadcast too and raised on every rank: all fail with one message.
    Collective: every rank must call it.
    """
    if not D.is_dist():
        return read()
    box: List[Any] = [None]
    if D.is_main():
        try:
            box[0] = ("ok", read())
        except Exception as e:  # sent to the other ranks as it is, then raised here too
            box[0] = ("error", e)
    torch.distributed.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


# ----------------------------------------------------------------------------------------------- what the project writes
def plain_options(opt: Mapping[str, Any]) -> Dict[str, Any]:
    """The options as plain YAML-safe values (internal ``_`` keys dropped; tuples become lists)."""
    plain = {k: v for k, v in opt.items() if not str(k).startswith("_")}
    return yaml.safe_load(yaml.safe_dump(_yaml_safe(plain), sort_keys=False))


def _yaml_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def checkpoint_meta(tree: str, opt: Mapping[str, Any], scoring: Mapping[str, Any]) -> Dict[str, Any]:
    """``"sama"`` of every checkpoint the project writes: ``{"version", "tree": "vqa" | "iqa", "options": the full
    options used, "scoring": what a scorer needs (``stype``; VQA ``sample_types``, IQA ``data``: grid)}``."""
    if tree not in ("vqa", "iqa"):
        raise ValueError(f"checkpoint_meta: tree must be 'vqa' or 'iqa', got {tree!r}")
    return {"version": META_VERSION, "tree": tree, "options": plain_options(opt),
            "scoring": _yaml_safe(dict(scoring))}


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``obj`` (dicts in key order, lists and tuples in order)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def tensor_checksum(obj: Any) -> str:
    """``"crc32:XXXXXXXX"`` over the bytes of every tensor in ``obj`` in key order (a top-level ``checksum`` left
    out). CRC-32 (zlib) costs about 0.1 s for a Swin-T-sized state dict; it is there to catch damage, not tampering."""
    if isinstance(obj, Mapping):
        obj = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    crc = 0
    for t in _tensors(obj):
        if t.device.type == "meta":
            continue
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        crc = zlib.crc32(data, crc)
    return f"crc32:{crc:08x}"


def _verify_checksum(path: str, obj: Any) -> None:
    """Refuse a file whose tensors no longer match the checksum stored when it was saved."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get(CHECKSUM_KEY), str):
        return
    stored, now = obj[CHECKSUM_KEY], tensor_checksum(obj)
    if stored != now:
        raise CheckpointError(f"{path} is damaged: the checksum of its tensors differs from the one stored when it was "
                              f"saved (stored {stored}, now {now}): copy or download it again")


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (containers rebuilt with their type, a state dict's
    ``_metadata`` kept: module versions that ``load_state_dict`` reads; nothing else changed)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        out.update((k, _to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_to_cpu(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while the block runs and deliver it once the block has ended.

    Interrupted inside ``torch.save``, the zip writer's own clean-up raises a ``RuntimeError`` in place of the
    ``KeyboardInterrupt``, so a command stopped while writing a checkpoint ended with a traceback and status 1, not
    its one line and 130. Held, the file is finished and renamed into place first. Only the main thread receives
    signals; elsewhere, or where SIGINT is ignored, the block just runs (:func:`samacore.startup.sigint_handled`).
    """
    held: List[int] = []
    try:
        with sigint_handled(lambda signum, frame: held.append(signum)):
            yield
    finally:
        if held:
            signal.raise_signal(signal.SIGINT)  # now to the handler that was there (Python's: KeyboardInterrupt)


def save_checkpoint(obj: Any, path: str) -> None:
    """Save atomically (a temporary file beside ``path``, then a rename: a kill never leaves half a file), with
    CPU tensors and, for a dict, the ``checksum`` of its tensors (:func:`tensor_checksum`). Ctrl-C during the write
    takes effect once the file is in place (:func:`ctrl_c_held`)."""
    obj = _to_cpu(obj)
    if isinstance(obj, dict):
        obj[CHECKSUM_KEY] = tensor_checksum(obj)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with ctrl_c_held():
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


@dataclass
class LoadReport:
    """What a checked load did: keys the model lacked in the file, keys the file had beyond the model."""

    what: str
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        def short(keys: List[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = [f"{self.what}: loaded {self.loaded} tensors"]
        if self.missing:
            parts.append(f"missing (left as initialised): {short(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected (ignored): {short(self.unexpected)}")
        parts += self.notes
        return "; ".join(parts)


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    allow_partial: bool = False,
    what: str = "model",
    ignore_missing: tuple = (),
) -> LoadReport:
    """Load ``state_dict`` into ``module`` and report what did not match.

    A learnable tensor of the model that the file lacks is an error unless ``allow_partial`` (or it matches one
    of the ``ignore_missing`` suffixes, for tensors a format is known to lack). A tensor whose shape differs is
    always an error. Missing non-learnable buffers (e.g. index tables the model rebuilds) are reported only.
    """
    own = module.state_dict()
    learnable = {name for name, _ in module.named_parameters()}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise CheckpointError(f"{what}: tensors with the wrong shape: " + "; ".join(mismatched[:4])
                              + (f"; ... ({len(mismatched)} in all)" if len(mismatched) > 4 else "") + f": {SHAPE_HINT}")
    fatal = [k for k in missing if k in learnable and not k.endswith(tuple(ignore_missing))]
    if fatal and not allow_partial:
        shown = ", ".join(fatal[:8]) + (f", ... ({len(fatal)} in all)" if len(fatal) > 8 else "")
        raise CheckpointError(
            f"{what}: the checkpoint lacks {len(fatal)} learnable tensors: {shown}. "
            "Set the option allow_partial_load: true (--set allow_partial_load=true) to keep their initial values."
        )
    if any(t.is_meta for t in own.values()):
        # a model built without storage (build_with_weights) takes the file's tensors themselves: no copy; cast
        # to the model's dtype, as copying into its tensors would
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items() if k in own}, strict=False,
                               assign=True)
    else:
        module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return LoadReport(what=what, loaded=len(own) - len(missing), missing=missing, unexpected=unexpected)


def build_with_weights(build: Callable[[], M], load: Callable[[M], T], device: str) -> Tuple[M, T]:
    """``(model on device, load's result)`` for a model whose every tensor is about to come from a checkpoint.

    ``build()`` makes the model, ``load(model)`` puts the file's weights into it (through
    :func:`load_state_dict_checked`). The model is first built on the meta device: no storage, no random
    initialisation (a third of a second for FAST-VQA-B on a CPU, thrown away by the load), and the load hands it
    the file's tensors; buffers that a module computes are then computed (timm's ``init_non_persistent_buffers``,
    e.g. Swin-V2's coordinate tables). Where that cannot work it is built as usual: a model whose construction or
    checks need values, a file that leaves a tensor of the model without a value (a missing buffer,
    ``allow_partial``), or weights that do not fit (the usual build then raises the error, as it would anyway).
    """
    try:
        with torch.device("meta"):
            model = build()
        result = load(model)
    except Exception:  # only a shortcut: the usual build below does the same and raises any real error
        pass
    else:
        if _computed_buffers_filled(model):
            return model.to(device), result
    model = build().to(device)
    return model, load(model)


def _computed_buffers_filled(model: nn.Module) -> bool:
    """Give storage (on the CPU, where the file's tensors are) and values to the buffers still on the meta device
    of every module that computes its own (``init_non_persistent_buffers()``, timm's convention for models built
    on the meta device); whether every tensor of the model has a value then."""
    for module in model.modules():
        names = [n for n, b in module._buffers.items() if b is not None and b.is_meta]
        if names and callable(getattr(module, "init_non_persistent_buffers", None)):
            for n in names:  # in place of _buffers: the buffer stays persistent or not, as registered
                module._buffers[n] = torch.empty_like(module._buffers[n], device="cpu")
            module.init_non_persistent_buffers()
    return not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))
