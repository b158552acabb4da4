"""Score videos with a trained SAMA model: ``python VQA/vqa.py -v VIDEO [-v VIDEO ...] | --dir DIR``.

One video prints its score; several (or ``--output``) give a CSV ``name,score,calibrated,error``, one row per
video in the order given (``--dir``: the folder's video files, sorted, names relative to the folder).

**score** is the raw model output, exactly what ``demo_test.py`` writes as ``pred``: test-mode sampling with the
options' test ``sample_types`` (the paper's: 4 temporal segments of 32 frames, every 2nd frame, each frame a 7x7
grid of 32x32 fragments, centred offsets), the clips scored separately and the score maps averaged over clips and
positions.

**calibrated** maps the raw score to the MOS scale of the checkpoint's training set with the checkpoint's
``label_stats`` -- the rule of :mod:`samacore.calibration`, shared with the image tree::

    calibrated = label_mean + label_std * (score - pred_mean) / pred_std

Checkpoints without the score statistics (``pred_mean`` / ``pred_std``; e.g. the released SAMA weights) get an
empty ``calibrated`` column and a note on stderr saying what is missing.

Checkpoint (``--ckpt``; without it, the first of):

1. ``pretrained_weights/SAMA-baseline_val-ltest_s_dev_v0.0.pth`` (also looked for in ``VQA/pretrained_weights``):
   the SAMA authors' released LSVQ model, under the name their test options use;
2. the newest ``*_s_dev_v0.0.pth`` (best-epoch EMA model), else ``*_Epoch_*.pth``, that our trainer wrote under
   ``runs/`` or ``pretrained_weights/`` (e.g. ``make demo`` / the examplar training);
3. otherwise the program stops and says what to download or run.

These are looked up in the working directory and in the repository root.

Model and sampling: ``--options`` FILE (its ``model`` block, ``stype``, and the ``sample_types`` of its first
``val*`` data set); else the ``options.yml`` of the run that wrote the checkpoint (``runs/{name}/``, found by the
checkpoint's file name); else ``VQA/options/fast-SAMA-test.yml``. ``--stype`` overrides the sample type.

Test-mode scores are deterministic: no randomness, and every video's clips are scored by one model call of their
own, so on CPU a video's score is bit-identical across runs, ``--batch-size`` and ``--num-workers`` (tested).
On GPUs, cuDNN may pick other kernels on other runs; ``--bf16`` (autocast) trades the last digits for speed.

A bad video (missing, empty, truncated, undecodable) gets an empty score and its reason in ``error``; the
others are still scored. The exit status is 1 only if every video failed (2 for usage / checkpoint / options).
"""
from __future__ import annotations

import argparse
import copy
import glob
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from samacore import engine, scoring
from samacore.calibration import Calibration
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.options import OptionError
from samacore.scoring import NoCheckpointError, ScoreRow
from samacore.utils import pick_device

from .datasets import VIDEO_EXTENSIONS, VideoReadError, _VideoQualityDataset
from .models.checkpoints import BACKBONE_ONLY, detect_format_of, load_vqa_weights
from .recipe import build_model, make_predict_fn
from .sampling import SAMPLE_TYPES, canonical_sample_type
from .schema import check_vqa_options, load_vqa_options

VQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(VQA_DIR)
DEFAULT_OPTIONS = os.path.join(VQA_DIR, "options", "fast-SAMA-test.yml")
RELEASED_NAME = "SAMA-baseline_val-ltest_s_dev_v0.0.pth"
RELEASED_WEIGHTS = os.path.join("pretrained_weights", RELEASED_NAME)
RELEASE_URL = "https://drive.google.com/drive/folders/1adB3aB8gBMx7c38tEfgls-i6QNZJI8nF"
OWN_CHECKPOINT_GLOBS = ("*_s_dev_v0.0.pth", "*_Epoch_*.pth")  # in order of preference
DEFAULT_CHECKPOINT = scoring.CheckpointSearch(
    what="VQA",
    released=(RELEASED_WEIGHTS, os.path.join("VQA", RELEASED_WEIGHTS)),
    released_why="the released SAMA LSVQ model",
    patterns=OWN_CHECKPOINT_GLOBS,
    trainer="samavqa training",
    looked_for=f"{RELEASED_WEIGHTS} (the released SAMA model) and for runs/**/{OWN_CHECKPOINT_GLOBS[0]}, "
               f"pretrained_weights/**/{OWN_CHECKPOINT_GLOBS[0]} (or {OWN_CHECKPOINT_GLOBS[1]}, written by our trainer)",
    what_to_do=f"Either download {RELEASED_NAME} from the SAMA authors ({RELEASE_URL}) into pretrained_weights/, or "
               "train a model on the bundled examplar videos (`make demo`), or pass --ckpt FILE.",
)

__all__ = [
    "NoCheckpointError",
    "RELEASED_WEIGHTS",
    "ScoreRow",
    "VideoScorer",
    "find_default_checkpoint",
    "list_video_files",
    "load_scorer",
    "main",
    "scoring_options",
    "write_csv",
]


# ----------------------------------------------------------------------------------------------- checkpoint
def default_search_roots() -> List[str]:
    """Folders searched for ``pretrained_weights/`` and ``runs/``: the working directory, then the repo root."""
    return scoring.search_roots(REPO_ROOT)


def find_default_checkpoint(roots: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """``(path, why)`` of the checkpoint to use without ``--ckpt``; :class:`NoCheckpointError` if there is none."""
    return DEFAULT_CHECKPOINT.find(list(roots) if roots is not None else default_search_roots())


# ----------------------------------------------------------------------------------------------- options
def _run_options_for(ckpt: str, roots: Sequence[str]) -> Optional[str]:
    """The ``runs/{name}/options.yml`` of the run whose name starts the checkpoint's file name, if any."""
    base = os.path.basename(ckpt)
    dirs = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ckpt))), "runs"),
            os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))] + [os.path.join(r, "runs") for r in roots]
    best: Optional[Tuple[int, str]] = None
    for d in dirs:
        for path in glob.glob(os.path.join(d, "*", "options.yml")):
            name = os.path.basename(os.path.dirname(path))
            if base.startswith(name + "_") and (best is None or len(name) > best[0]):
                best = (len(name), path)
    return best[1] if best else None


def scoring_options(opt: Mapping[str, Any]) -> Tuple[Dict[str, Dict[str, Any]], Optional[int]]:
    """``(sample_types, num_threads)`` of the first ``val*`` data set of an option mapping (test sampling).

    Finetune-style files (``data.test``) work too; otherwise the first data set with ``sample_types``.
    """
    data = opt.get("data") or {}
    if not isinstance(data, Mapping):
        raise OptionError("options.data must be a mapping")
    blocks: List[Tuple[str, Mapping[str, Any]]] = []
    if isinstance(data.get("test"), Mapping) and "sample_types" in data["test"]:
        blocks.append(("data.test", data["test"]))
    for key, spec in data.items():
        args = (spec or {}).get("args") if isinstance(spec, Mapping) else None
        if isinstance(args, Mapping) and "sample_types" in args:
            blocks.append((f"data.{key}.args", args))
    blocks.sort(key=lambda kv: 0 if kv[0].startswith("data.val") or kv[0] == "data.test" else 1)
    if not blocks:
        raise OptionError("the options have no data set with sample_types (e.g. data.val-*.args.sample_types)")
    where, block = blocks[0]
    st = block["sample_types"]
    if not isinstance(st, Mapping) or not st:
        raise OptionError(f"{where}.sample_types must map branch names to sampling options")
    threads = block.get("num_threads", data.get("num_threads"))
    return {k: dict(v or {}) for k, v in st.items()}, (int(threads) if threads else None)


# ----------------------------------------------------------------------------------------------- scoring
class _ScoreDataset(_VideoQualityDataset):
    """Test-mode items of arbitrary video paths; missing files are per-item errors, not a construction error."""

    def __init__(self, paths: Sequence[str], sample_types: Mapping[str, Any], stype: str, num_threads: int = 1):
        super().__init__()
        self._setup({"sample_types": dict(sample_types), "num_threads": num_threads}, stype, False, "scoring")
        self.video_infos = [dict(filename=str(p), fileid=str(p), label=math.nan) for p in paths]

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = super().__getitem__(index)
        item["index"] = index
        return item


@dataclass
class VideoScorer:
    """A loaded model with its test sampling; :meth:`score_paths` scores video files."""

    model: nn.Module
    stype: str
    sample_types: Dict[str, Dict[str, Any]]
    device: str
    checkpoint: str
    checkpoint_format: str
    calibration: Optional[Calibration]
    calibration_note: str
    bf16: bool = False
    num_threads: int = 1
    notes: List[str] = field(default_factory=list)

    def dataset(self, paths: Sequence[str]) -> _ScoreDataset:
        return _ScoreDataset(paths, self.sample_types, self.stype, self.num_threads)

    def score_batch(self, batch: Mapping[str, Any]) -> List[float]:
        """Raw scores of a collated batch of items, one model call per video (batch-size independent)."""
        predict = make_predict_fn(list(self.model.branches))
        out: List[float] = []
        for i in range(len(batch["name"])):
            one = {k: (v[i:i + 1] if isinstance(v, torch.Tensor) else v) for k, v in batch.items() if k != "num_clips"}
            one["num_clips"] = {k: v[i:i + 1] for k, v in batch["num_clips"].items()}
            one["name"] = [batch["name"][i]]
            with engine.autocast(self.device, "bf16" if self.bf16 else None):
                _, preds, _ = predict(self.model, one, self.device)
            out.append(float(preds.float().reshape(-1)[0]))
        return out

    def score_paths(self, paths: Sequence[str], batch_size: int = 1, num_workers: int = 0,
                    progress: bool = True) -> List[ScoreRow]:
        """Score video files; a bad file gets a row with ``error`` set. Rows are in the order of ``paths``."""
        self.model.eval()
        return scoring.score_files(paths, self.dataset(paths), (VideoReadError,), self.score_batch, self.calibration,
                                   batch_size, num_workers, progress)


def load_scorer(
    ckpt: Optional[str] = None,
    options: Union[None, str, Mapping[str, Any]] = None,
    stype: Optional[str] = None,
    device: Optional[str] = None,
    bf16: bool = False,
    search_roots: Optional[Sequence[str]] = None,
    trust_checkpoint: bool = False,
) -> VideoScorer:
    """Resolve the checkpoint and options (see the module docstring) and load the model in eval mode.

    ``options`` may be an option file or an already loaded mapping (same schema). ``trust_checkpoint``: full
    unpickle of the checkpoint (``--trust-checkpoint``; :func:`samacore.checkpoint.load_checkpoint`).
    """
    notes: List[str] = []
    roots = list(search_roots) if search_roots is not None else default_search_roots()
    path = scoring.checkpoint_path(ckpt, lambda: find_default_checkpoint(roots), notes)
    obj = load_checkpoint(path, trust=trust_checkpoint)
    fmt = detect_format_of(obj, path)
    if fmt in BACKBONE_ONLY:
        raise CheckpointError(f"{path} holds backbone weights only ({BACKBONE_ONLY[fmt]}) without a trained quality "
                              "head, so it cannot score videos: pass a trained SAMA / FAST-VQA model")
    info = {k: v for k, v in obj.items() if k != "state_dict"} if isinstance(obj, Mapping) and fmt == "vqa_release" else {}

    if isinstance(options, Mapping):
        opt, source = check_vqa_options(copy.deepcopy(dict(options))), "the given options"
    else:
        opt_path = options or _run_options_for(path, roots)
        source = opt_path or DEFAULT_OPTIONS
        opt = load_vqa_options(opt_path) if opt_path else load_vqa_options(DEFAULT_OPTIONS)
        source = opt["_options_path"]
    sample_types, threads = scoring_options(opt)
    try:
        st = canonical_sample_type(stype or opt.get("stype") or "sama")
    except ValueError as e:
        raise OptionError(f"--stype: {e}") from None
    desc = ", ".join(f"{k}: {v.get('num_clips')} clips x {v.get('clip_len')} frames (interval "
                     f"{v.get('frame_interval')}), {v.get('fragments_h', 7)}x{v.get('fragments_w', 7)} grid of "
                     f"{v.get('fsize_h', 32)}x{v.get('fsize_w', 32)}" for k, v in sample_types.items())
    notes.append(f"sampling: {st}; {desc} (from {source})")

    dev = pick_device(device)
    model = build_model(opt, dev)
    missing = [k for k in sample_types if k.split("_")[0] not in model.branches]
    if missing:
        raise OptionError(f"sample_types {', '.join(missing)} have no model branch; the model has "
                          f"{', '.join(model.branches)}")
    report = load_vqa_weights(model, obj)
    notes += [str(n) for n in getattr(report, "notes", [])]
    model.eval()
    cal, cal_note = scoring.calibration_for(info, "samavqa training", "videos")
    return VideoScorer(model, st, sample_types, dev, path, fmt, cal, cal_note, bf16, int(threads or 1), notes)


# ----------------------------------------------------------------------------------------------- CLI
def list_video_files(folder: str) -> List[Tuple[str, str]]:
    """``(name relative to folder, path)`` of the video files in ``folder`` (by extension), sorted."""
    return scoring.list_media(folder, VIDEO_EXTENSIONS, "video")


write_csv = scoring.write_score_csv


def build_parser() -> argparse.ArgumentParser:
    return scoring.scoring_parser(
        "video", "-v", "Score videos with a SAMA VQA model (raw score and, when the checkpoint allows, the score "
                       "calibrated to its training set's MOS scale).",
        RELEASED_WEIGHTS, "VQA option file for model / test sampling / stype (default: the checkpoint's run options, "
                          "else VQA/options/fast-SAMA-test.yml)",
        dict(help=f"sample type: {', '.join(SAMPLE_TYPES)} (default: from the options)"),
        batch_size=1, batch_help="videos per loader batch (scores do not depend on it)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``VQA/vqa.py``; returns the exit status."""
    return scoring.run_scoring(build_parser().parse_args(argv), load_scorer, VIDEO_EXTENSIONS, "video")
