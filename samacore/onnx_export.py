"""ONNX export of the trees' quality models, and ONNX Runtime runners that stand in for them when scoring.

Export (``VQA/export_onnx.py`` / ``sama-export-vqa``, ``IQA/export_onnx.py`` / ``sama-export-iqa``): the model that
``load_scorer`` builds (same checkpoint and option resolution) is traced with torch's TorchScript exporter
(``dynamo=False``: no extra packages) for the input shape its options sample, and the file carries in its
``metadata_props`` what a scorer needs besides the graph (:func:`read_metadata`): ``tree``, ``stype``, the sampling
options, the inputs' names and shapes, the checkpoint's calibration numbers. Every export is checked before it is
kept: ONNX Runtime and PyTorch run the same random input and the largest absolute difference of the outputs must
be <= :data:`PARITY_TOLERANCE`.

Graphs:

* VQA: one input per branch, named by its ``sample_types`` key, ``[clips, 3, T, H, W]`` (normalised clips; the
  clip axis is dynamic), output ``score_map`` ``[clips, 1, D, H', W']`` -- the branches' maps added, exactly what
  ``DiViDeAddEvaluator.forward(..., inference=True)`` gives. Splitting a video into clips and averaging the map
  over clips and positions stay in Python (the scorer's ``make_predict_fn``), so one graph serves any number of
  videos per call.
* IQA: input ``image`` ``[B, 3, H, W]`` (dynamic batch), output ``score`` ``[B]``.

Runners (:func:`load_onnx_model`): :class:`OnnxVideoModel` is called like the evaluator
(``runner(vclips, inference=True) -> score map``), :class:`OnnxImageModel` like ``IQAModel`` (``runner(x) -> [B]``);
``eval`` / ``train`` / ``to`` are no-ops, so ``scorer.model = runner`` scores with ONNX Runtime unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["PARITY_TOLERANCE", "ExportError", "OnnxVideoModel", "OnnxImageModel", "check_output_path", "export_parser",
           "export_onnx", "load_onnx_model", "ort_session", "parity_check", "read_metadata", "run_export",
           "scorer_metadata", "torch_outputs"]

#: largest |ONNX Runtime - PyTorch| an export may show on its check input
PARITY_TOLERANCE = 1e-4
#: ONNX opset of the exported graphs (14+: scaled_dot_product_attention; 17: LayerNormalization)
OPSET = 17
#: metadata keys whose values are JSON (the others are plain strings)
JSON_KEYS = ("sampling", "inputs", "outputs", "calibration")


class ExportError(Exception):
    """A problem a user can fix (output path, unsupported options, failed parity): one ``error:`` line."""


# ----------------------------------------------------------------------------------------------- export
def check_output_path(path: str) -> str:
    """``path`` made absolute, after checking that its folder exists and is writable (before any expensive work)."""
    path = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ExportError(f"--output {path} is a folder: give a file name such as model.onnx")
    if not os.path.isdir(folder):
        raise ExportError(f"--output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ExportError(f"--output {path}: not writable (check the permissions of {folder})")
    return path


def scorer_metadata(tree: str, stype: str, sampling: Mapping[str, Any], calibration: Any,
                    checkpoint: str) -> Dict[str, Any]:
    """The metadata a scorer needs besides the graph (``inputs`` / ``outputs`` are added by :func:`export_onnx`)."""
    cal = dataclasses.asdict(calibration) if dataclasses.is_dataclass(calibration) else calibration
    return {"tree": tree, "stype": stype, "sampling": dict(sampling), "calibration": cal,
            "checkpoint": os.path.basename(checkpoint), "producer": f"samacore.onnx_export (torch {torch.__version__})"}


def export_onnx(module: nn.Module, inputs: Mapping[str, Tensor], output_name: str, dynamic_axis: str,
                path: str, metadata: Mapping[str, Any]) -> None:
    """Trace ``module(*inputs.values())`` into ``path`` with ``metadata`` in its ``metadata_props``.

    Axis 0 of every input and of the output is dynamic (named ``dynamic_axis``). The file appears only once
    complete (written beside ``path``, then renamed).
    """
    import onnx

    names = list(inputs)
    meta = dict(metadata, inputs=[{"name": k, "shape": list(v.shape)} for k, v in inputs.items()],
                outputs=[output_name])
    axes = {name: {0: dynamic_axis} for name in names + [output_name]}
    fd, tmp = tempfile.mkstemp(suffix=".onnx.part", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the trace fixes the spatial sizes on purpose (the graph is for the options' input shape)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose (above)
            # no constant folding: it would store every block's attention mask ([nW, nH, N, N]) as a constant
            torch.onnx.export(module.eval(), tuple(inputs.values()), tmp, input_names=names, output_names=[output_name],
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=False, dynamo=False)
        graph = onnx.load(tmp)
        _shrink_integer_constants(graph)
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=json.dumps(value) if key in JSON_KEYS else str(value))
        onnx.save(graph, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result gets a normal file's permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:  # (what stopped the export is what is said)
                pass


def _shrink_integer_constants(model: Any, min_bytes: int = 1 << 20) -> None:
    """Large float constants that hold only small integers (the Video Swin's fragment gates and shift masks, which
    the tracer stores as float) become int8 constants + a Cast back: exact, a quarter of their size in the file."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = list(model.graph.node)
    for node in nodes:
        if node.op_type != "Constant" or not node.attribute or not node.attribute[0].HasField("t"):
            continue
        tensor = node.attribute[0].t
        if tensor.data_type != TensorProto.FLOAT or len(tensor.raw_data) < min_bytes:
            continue
        values = numpy_helper.to_array(tensor)
        small = values.astype(np.int8)
        if not np.array_equal(small.astype(np.float32), values):
            continue
        out = node.output[0]
        packed = helper.make_node("Constant", [], [out + "_int8"], value=numpy_helper.from_array(small, out + "_int8"))
        cast = helper.make_node("Cast", [out + "_int8"], [out], to=TensorProto.FLOAT)
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(at, cast)
        model.graph.node.insert(at, packed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def torch_outputs(module: nn.Module, inputs: Mapping[str, Tensor]) -> np.ndarray:
    """``module(*inputs)`` in eval mode without gradients, as float32 numpy."""
    with torch.no_grad():
        return module.eval()(*inputs.values()).float().numpy()


def parity_check(want: np.ndarray, path: str, inputs: Mapping[str, Tensor], threads: Optional[int] = None) -> float:
    """Largest ``|ONNX Runtime - want|`` for ``inputs`` (``want``: PyTorch's outputs, :func:`torch_outputs`);
    :class:`ExportError` above :data:`PARITY_TOLERANCE`."""
    got = ort_session(path, threads).run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    if got.shape != want.shape:
        raise ExportError(f"{path}: ONNX Runtime gives shape {got.shape}, PyTorch {want.shape}")
    diff = float(np.abs(got - want).max())
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"{path}: ONNX Runtime and PyTorch differ by up to {diff:.3g} on the check input "
                          f"(allowed {PARITY_TOLERANCE:g}); the file is not fit for scoring")
    return diff


# ----------------------------------------------------------------------------------------------- runtime
def ort_session(path: str, threads: Optional[int] = None):
    """An ONNX Runtime CPU session of ``path``; ``threads`` intra-op threads (default: torch's thread count, so
    both runtimes use the same cores), one inter-op thread (the graphs are sequential)."""
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable / invalid files
        raise ExportError(f"{path} is not a loadable ONNX model: {str(e).splitlines()[0]}") from None


def read_metadata(session: Any) -> Dict[str, Any]:
    """The export's metadata (see the module docstring) of an ONNX Runtime session; JSON values decoded."""
    raw = dict(session.get_modelmeta().custom_metadata_map)
    return {k: json.loads(v) if k in JSON_KEYS else v for k, v in raw.items()}


class _OnnxRunner:
    """An ONNX Runtime session with the few ``nn.Module`` methods the scorers call (no-ops here)."""

    def __init__(self, path: str, threads: Optional[int] = None, session: Any = None) -> None:
        self.path = path
        self.session = session if session is not None else ort_session(path, threads)
        self.metadata = read_metadata(self.session)
        self.input_names: List[str] = [i.name for i in self.session.get_inputs()]
        self.training = False

    def eval(self) -> "_OnnxRunner":
        return self

    def train(self, mode: bool = True) -> "_OnnxRunner":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "_OnnxRunner":
        return self

    def _run(self, feeds: Mapping[str, Tensor]) -> Tensor:
        arrays = {k: v.detach().float().cpu().contiguous().numpy() for k, v in feeds.items()}
        return torch.from_numpy(self.session.run(None, arrays)[0])


class OnnxVideoModel(_OnnxRunner):
    """Drop-in for ``DiViDeAddEvaluator`` at inference: ``runner({branch: [B*clips, 3, T, H, W]}) -> [B*clips, 1,
    D, H', W']`` (the branches' score maps added), on the CPU."""

    @property
    def branches(self) -> List[str]:
        return sorted({name.split("_")[0] for name in self.input_names})

    def __call__(self, vclips: Mapping[str, Tensor], inference: bool = True, pooled: bool = False,
                 **unused: Any) -> Tensor:
        if not inference:
            raise ValueError(f"{self.path}: an ONNX model only scores (inference=True); train the PyTorch model")
        if sorted(vclips) != sorted(self.input_names):
            raise ValueError(f"{self.path} takes clips {', '.join(self.input_names)}, got {', '.join(vclips)}")
        scores = self._run(vclips)
        return scores.mean((1, 2, 3, 4)) if pooled else scores


class OnnxImageModel(_OnnxRunner):
    """Drop-in for ``IQAModel``: ``runner([B, 3, H, W]) -> [B]`` scores, on the CPU."""

    def __call__(self, x: Tensor) -> Tensor:
        return self._run({self.input_names[0]: x})


RUNNERS = {"vqa": OnnxVideoModel, "iqa": OnnxImageModel}


def load_onnx_model(path: str, threads: Optional[int] = None) -> _OnnxRunner:
    """The runner for an exported file (:class:`OnnxVideoModel` or :class:`OnnxImageModel`, by its ``tree``
    metadata); ``runner.metadata`` holds the sampling, stype and calibration it was exported with."""
    path = os.path.expanduser(path)
    session = ort_session(path, threads)
    tree = read_metadata(session).get("tree")
    if tree not in RUNNERS:
        raise ExportError(f"{path} was not written by sama-export-vqa / sama-export-iqa (metadata tree={tree!r}; "
                          f"expected one of {', '.join(RUNNERS)})")
    return RUNNERS[tree](path, threads, session)


# ----------------------------------------------------------------------------------------------- command
#: what a module to export, its inputs (name -> example tensor), output name and metadata are made of
Exportable = Callable[[argparse.Namespace], "tuple[nn.Module, Dict[str, Tensor], str, Dict[str, Any]]"]


def export_parser(tree: str, what: str, ckpt_required: bool = True) -> argparse.ArgumentParser:
    """The export command line both trees share; the tree adds its own options (e.g. ``-m``)."""
    p = argparse.ArgumentParser(prog=f"sama-export-{tree}", description=(
        f"Export a trained SAMA {tree.upper()} model to ONNX for the input shape its options sample, with what the "
        f"scorer needs (stype, sampling, calibration) in the file's metadata; ONNX Runtime's output on a random "
        f"input is checked against PyTorch's (max abs difference <= {PARITY_TOLERANCE:g})."))
    p.add_argument("--ckpt", required=ckpt_required, help=f"trained {what} checkpoint (.pth)")
    p.add_argument("--options", help="option file (default: the one the scorer would use for this checkpoint)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--stype", help="sample type stored for scoring (default: from the options)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the check (default: torch's)")
    p.add_argument("--trust-checkpoint", action="store_true", help="full unpickle of the checkpoint (see sama-"
                                                                   f"{tree} --help)")
    return p


def run_export(args: argparse.Namespace, exportable: Exportable, user_errors: tuple) -> int:
    """Export ``exportable(args)`` to ``args.output`` and check it; problems a user can fix (``user_errors``,
    :class:`ExportError`) end with one ``error:`` line and exit status 2."""
    try:
        out = check_output_path(args.output)
        start = time.perf_counter()
        module, inputs, output_name, meta = exportable(args)
        torch.manual_seed(0)
        check = {k: torch.randn(v.shape) for k, v in inputs.items()}
        want = torch_outputs(module, check)  # before tracing: also fills caches the trace then reads as constants
        try:
            export_onnx(module, inputs, output_name, "clips" if meta["tree"] == "vqa" else "batch", out, meta)
        except OSError as e:  # a full disk, a quota, an I/O error: the part file is gone, the output untouched
            fix = ("free space, then export again" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                   else "export again once it can be written")
            raise ExportError(f"--output {out}: cannot write ({e.strerror or e}); nothing was written: {fix}") from None
        try:
            diff = parity_check(want, out, check, args.threads)
        except ExportError:
            os.remove(out)  # a graph that does not compute the model is no result
            raise
    except (ExportError, *user_errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items())
    print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB; inputs {shapes}; {time.perf_counter() - start:.0f} s)")
    print(f"parity on a random input: max |onnxruntime - torch| = {diff:.3g} (allowed {PARITY_TOLERANCE:g})")
    return 0
