"""Score images with a trained SAMA IQA model: ``python IQA/iqa.py -i IMAGE [-i IMAGE ...] | --dir DIR | --list FILE``.

One image prints its score; several (or ``--output``) give a CSV ``name,score,calibrated,error,note``, one row per
image in the order given (``--dir``: the folder's image files, sorted, names relative to the folder; with
``--recursive`` its subfolders' too; ``--list FILE``: one path per line, relative to FILE's folder or absolute,
``#`` comment lines). Python: :func:`load_scorer`.

**score** is the raw model output: the mean of the head's per-token scores on the test-mode sample (centred
fragments, no augmentation), exactly what ``demo_test_iqa.py`` writes as ``pred``.

**calibrated** maps the raw score to the MOS scale of the checkpoint's training set, by moment matching on the
training images::

    calibrated = label_mean + label_std * (score - pred_mean) / pred_std

``label_mean`` / ``label_std``: mean and (population) standard deviation of the training labels of the split
the checkpoint was trained on; ``pred_mean`` / ``pred_std``: mean and standard deviation of the *same
checkpoint's* raw scores on those training images (test-mode sampling), computed once by the trainer after the
split (``samacore.calibration.calibration_stats``) and saved in the checkpoint's ``label_stats``. This is the same affine
map the evaluation applies before PLCC / RMSE (predictions rescaled to the labels' mean and std), except that
its statistics come from the training images only -- no test label is used -- so it is an honest out-of-sample
mapping. It fixes scale and offset only: it cannot make a poor ranking better, and on a different database the
calibrated value is still on the *training* database's scale. Checkpoints without these statistics (the
original SAMA trainer's files, Microsoft backbones, ours from before the statistics were added) get an empty
``calibrated`` column and a note on stderr saying which statistics are missing.

Checkpoint (``--ckpt``; without it, the first of):

1. ``pretrained_weights/SAMA-IQA-sama-koniq_koniq_s_dev.pth`` -- the file the original SAMA IQA trainer writes
   with its shipped KonIQ options (the SAMA authors publish VQA weights only; put your own SAMA IQA file
   there, or pass ``--ckpt``);
2. the newest ``*_split??_*_s_dev.pth`` that our trainer wrote under ``runs/`` or ``pretrained_weights/``
   (e.g. the examplar training);
3. otherwise the program stops and says what to download or run.

These are looked up in the working directory and in the repository root.

Model, sampling grid and sample type: ``--options`` FILE (its ``model`` and ``data`` blocks and ``stype``);
else the options the checkpoint carries (``obj["sama"]["options"]``); else what our checkpoints store
(``model_config``, ``data``, ``stype``); else ``IQA/options/fast-sama-iqa.yml``. ``--stype`` overrides the sample
type (the checkpoint's calibration then no longer applies: ``calibrated`` is left empty and a note says why). A
checkpoint of ours always rebuilds its own architecture. A video given with ``-i`` is a usage error (exit 2).
Where the rows go, ``--resume``, ``--overwrite``, torchrun and clean stops: :mod:`samacore.scoring`.

EXIF orientation: scoring turns photos upright by their EXIF orientation (a phone photo is judged as it is
seen); ``--no-exif-transpose`` scores the stored pixel grid instead. The option ``data.exif_transpose`` is for
training and testing only (off by default there, as in the original).

Odd but usable images are scored, and the ``note`` column (and a warning) says what was done: an animated image
(first frame only), an alpha channel dropped, 16-bit or CMYK pixels converted, an EXIF orientation applied or
ignored, an image enlarged 2x or more to fill the sampling grid (e.g. a 1x1 image).

Test-mode scores are deterministic: sampling involves no randomness and images are independent in the model,
so on CPU the CSV is bit-identical across runs, ``--batch-size`` and ``--num-workers`` (checked by the tests).
On a GPU, cuBLAS / cuDNN may pick other kernels for other batch sizes, which can move the last float32 digits.
``--bf16`` (autocast) trades that stability for speed.

A bad image (missing, unreadable, truncated, not an image) gets an empty score and its reason in ``error``;
the others are still scored. The exit status is 1 only if every image failed (2 for usage / checkpoint /
option errors).
"""
from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from samacore import engine, scoring
from samacore.calibration import Calibration, calibration_from_info
from samacore.checkpoint import CheckpointError, build_with_weights, load_checkpoint
from samacore.options import OptionError
from samacore.sampling import resolve_sample_type
from samacore.scoring import NoCheckpointError, ScoreRow
from samacore.utils import pick_device

from .checkpoints import detect_format, load_into_model
from .datasets import ImageReadError, build_transform, enlarge, load_image, sampling_args
from .model import IQAModel
from .recipe import build_model
from .sampling import IQA_SAMPLE_TYPES, sample_image
from .schema import check_options, read_scoring_options

IQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(IQA_DIR)
DEFAULT_OPTIONS = os.path.join(IQA_DIR, "options", "fast-sama-iqa.yml")
RELEASED_WEIGHTS = os.path.join("pretrained_weights", "SAMA-IQA-sama-koniq_koniq_s_dev.pth")
OWN_CHECKPOINT_GLOB = "*_split[0-9][0-9]_*_s_dev.pth"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
DEFAULT_CHECKPOINT = scoring.CheckpointSearch(
    what="IQA",
    released=(RELEASED_WEIGHTS,),
    released_why="SAMA IQA weights in pretrained_weights/",
    patterns=(OWN_CHECKPOINT_GLOB,),
    trainer="samaiqa training",
    looked_for=f"{RELEASED_WEIGHTS} (the file the original SAMA IQA trainer writes; the SAMA authors publish VQA "
               f"weights only) and for runs/**/{OWN_CHECKPOINT_GLOB} or pretrained_weights/**/{OWN_CHECKPOINT_GLOB} "
               "(written by our trainer)",
    what_to_do="Either train a model on the bundled examplar photos (`make demo`; or `python "
               "tools/build_examplar_data.py --only iqa`, then `python IQA/demo_train_iqa_baseline.py -o "
               "IQA/options/examplar-sama-iqa.yml`), or pass --ckpt FILE.",
)


# ----------------------------------------------------------------------------------------------- checkpoint
def default_search_roots() -> List[str]:
    """Folders searched for ``pretrained_weights/`` and ``runs/``: the working directory, then the repo root."""
    return scoring.search_roots(REPO_ROOT)


def find_default_checkpoint(roots: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """``(path, why)`` of the checkpoint to use without ``--ckpt``; :class:`NoCheckpointError` if there is none."""
    return DEFAULT_CHECKPOINT.find(list(roots) if roots is not None else default_search_roots())


@dataclass
class ImageScorer(scoring.Scorer):
    """A loaded model with its sampling settings (:func:`load_scorer`; the shared part:
    :class:`samacore.scoring.Scorer`).

    ``scorer(x)`` scores ``x``: an image file (-> float), a list of files (-> list of floats) or an image tensor /
    array (see :func:`tensor_images`: ``[3, H, W]`` -> float, ``[B, 3, H, W]`` -> list) -- the pixels of a file
    score exactly as the file. ``scorer(x, calibrated=True)``: on the training set's MOS scale.
    :meth:`score_paths` gives CSV rows instead (bad files as rows with an error).
    """

    data_args: Dict[str, Any] = field(default_factory=dict)
    read_error: ClassVar[type] = ImageReadError

    def dataset(self, paths: Sequence[str], progress: bool = False) -> "_ScoreDataset":
        """Test-mode items of image files."""
        return _ScoreDataset(list(paths), self)

    def score_paths(self, paths: Sequence[str], batch_size: int = 8, num_workers: int = 0,
                    progress: bool = True, **batch_kwargs: Any) -> List[ScoreRow]:
        """Score image files (8 per batch by default); a bad file gets a row with ``error`` set, in order."""
        return super().score_paths(paths, batch_size, num_workers, progress, **batch_kwargs)

    def score_batch(self, batch: Mapping[str, Any]) -> List[scoring.Scored]:
        """Raw scores of a collated batch of test-mode samples (``batch["image"]``: ``[B, 3, H, W]``)."""
        with engine.autocast(self.device, "bf16" if self.bf16 else None):
            return self.model(batch["image"].to(self.device, non_blocking=True)).float().cpu().tolist()

    def score_tensor(self, x: Any, layout: Optional[str] = None) -> Tuple[List[Tuple[float, str, str]], bool]:
        """``([(raw score, note, name)], batched)`` of image tensors (see :func:`tensor_images`)."""
        images, batched = tensor_images(x, layout)
        ds = _ScoreDataset([], self)
        items = [ds.item(img, i, []) for i, img in enumerate(images)]
        self.model.eval()
        with torch.inference_mode():
            scores = self.score_batch(torch.utils.data.default_collate(items))
        return [(float(s), it["note"], f"tensor[{i}]" if batched else "tensor")  # type: ignore[arg-type]
                for i, (s, it) in enumerate(zip(scores, items))], batched


Scorer = ImageScorer  # the name before the trees shared samacore.scoring.Scorer


def tensor_images(x: Any, layout: Optional[str] = None) -> Tuple[List[Image.Image], bool]:
    """``(8-bit RGB PIL images, batched)`` of an image tensor or NumPy array.

    Accepted: ``[3, H, W]`` / ``[B, 3, H, W]`` (``layout="CHW"``) as float in [0, 1] (torchvision's ``to_tensor``,
    pyiqa) or uint8 0-255; ``[H, W, 3]`` / ``[B, H, W, 3]`` (``"HWC"``, PIL / NumPy order) as uint8 or float in
    [0, 1]. Without ``layout``: CHW when the channel dimension comes first and is 3, else HWC. Floats are rounded
    to 8 bits, the precision of the file pipeline (``round(x * 255)``: exact for ``to_tensor`` of 8-bit pixels).
    """
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))
    batched = t.dim() == 4
    if t.dim() not in (3, 4):
        raise ValueError(f"an image tensor must be [3, H, W], [H, W, 3] or a batch of them, got {list(t.shape)}")
    chw = t.shape[-3] == 3 if layout is None else layout == "CHW"
    if layout not in (None, "CHW", "HWC") or (t.shape[-3] if chw else t.shape[-1]) != 3:
        raise ValueError(f"an image tensor must be [3, H, W] (layout CHW) or [H, W, 3] (layout HWC), or a batch of "
                         f"them, got {list(t.shape)}" + (f" with layout {layout}" if layout else ""))
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"an image tensor must hold finite values, got {int((~torch.isfinite(t)).sum())} NaN / "
                             f"inf of {t.numel()}")
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > 1):
            raise ValueError(f"a float image tensor must hold values in [0, 1] (not normalised), got "
                             f"{float(t.min()):.3g} to {float(t.max()):.3g}")
        t = torch.round(t * 255).to(torch.uint8)
    elif t.dtype != torch.uint8:
        raise ValueError(f"an image tensor must be uint8 (0-255) or float (0-1), got {t.dtype}")
    t = t if batched else t[None]
    t = t.permute(0, 2, 3, 1) if chw else t
    if min(t.shape[1:3]) < 1:
        raise ValueError(f"an empty image tensor: {list(t.shape)}")
    return [Image.fromarray(np.ascontiguousarray(a.numpy()), "RGB") for a in t], batched


class _ScoreDataset(Dataset):
    """Test-mode items of image paths: ``{"image", "index", "note"}`` (``note``: what was done to an odd file)."""

    def __init__(self, paths: List[str], scorer: ImageScorer) -> None:
        self.paths = paths
        self.args = sampling_args(scorer.data_args)
        self.stype = scorer.stype
        self.exif = bool(scorer.data_args.get("exif_transpose", False))
        self.min_size = max(self.args["fragments_h"] * self.args["fsize_h"], self.args["fragments_w"] * self.args["fsize_w"])
        self.transform = build_transform(False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        notes: List[str] = []
        return self.item(load_image(self.paths[index], 0, self.exif, notes), index, notes)

    def item(self, img: Image.Image, index: int, notes: List[str]) -> Dict[str, Any]:
        img = self.transform(enlarge(img, self.min_size, notes))
        return {"image": sample_image(img, self.stype, False, **self.args), "index": index, "note": "; ".join(notes)}


def load_scorer(
    ckpt: Optional[str] = None,
    options: Optional[str] = None,
    stype: Optional[str] = None,
    device: Optional[str] = None,
    bf16: bool = False,
    search_roots: Optional[Sequence[str]] = None,
    trust_checkpoint: bool = False,
    exif_transpose: bool = True,
    sets: Sequence[str] = (),
    onnx: Optional[str] = None,
) -> ImageScorer:
    """The documented Python API (also ``samaiqa.load_scorer``): an :class:`ImageScorer` that scores image files,
    lists of files and image tensors. Resolves the checkpoint and options (see the module docstring) and loads
    the model in eval mode::

        import samaiqa
        scorer = samaiqa.load_scorer("runs/examplar-sama-iqa/..._s_dev.pth")
        scorer("photo.jpg")                                  # -> raw score (float)
        scorer(["a.png", "b.jpg"], calibrated=True)          # -> [calibrated scores]
        scorer(torchvision.transforms.functional.to_tensor(pil_image))   # [3, H, W] in [0, 1] -> float

    ``ckpt``: a checkpoint file (default: see the module docstring); ``options`` an option file; ``stype``
    overrides the sample type; ``device`` ``cpu`` / ``cuda[:N]``; ``bf16`` autocast; ``trust_checkpoint``: full
    unpickle of the checkpoint (``--trust-checkpoint``; :func:`samacore.checkpoint.load_checkpoint`);
    ``exif_transpose`` turns files upright by their EXIF orientation (default; False scores the stored pixel
    grid).
    """
    notes: List[str] = []
    if onnx is not None:  # an exported graph (sama-export-iqa): its metadata gives the sampling and calibration
        scoring.refuse_beside_onnx(ckpt, options, sets, bf16, trust_checkpoint, device)
        return _onnx_scorer(onnx, stype, exif_transpose, notes)
    given = read_scoring_options(options) if options is not None else None  # checked before the checkpoint is read
    path = scoring.checkpoint_path(ckpt, lambda: find_default_checkpoint(search_roots), notes)
    obj, fmt, info = _read_checkpoint(path, trust_checkpoint)
    opt, source = scoring.with_sets(*_options_for(given, obj, info), sets, lambda o: check_options(o, "score"))
    data_args = dict(sampling_args(opt["data"]), exif_transpose=bool(exif_transpose))
    st, overridden = _sample_type(opt.get("stype"), stype, source)
    notes.append(f"sampling: {st}, grid {data_args['fragments_h']}x{data_args['fragments_w']} of "
                 f"{data_args['fsize_h']}x{data_args['fsize_w']} (from {source})")
    model = _load_model(opt, obj, info, data_args, path, source, notes)
    dev = pick_device(device)
    model.to(dev).eval()
    cal, cal_note = scoring.calibration_for(info, "samaiqa training", "images")
    if overridden:
        cal, cal_note = None, overridden
    provenance = dict(scoring.checkpoint_identity(path), options=source, stype=st, sampling=data_args,
                      architecture=opt.get("model"))
    return ImageScorer(model, st, dev, path, fmt, cal, cal_note, bf16, notes, provenance, data_args=data_args)


def _sample_type(trained: Optional[str], stype: Optional[str], source: str) -> Tuple[str, str]:
    """``(sample type used, note)``: ``stype`` (``--stype``) or the one the model was trained with (``trained``,
    from ``source``); the note says when an override drops the calibration (empty otherwise)."""
    try:
        was = resolve_sample_type(trained, "image")
        st = resolve_sample_type(stype, "image") if stype else was
    except ValueError as e:
        raise OptionError(f"stype: {e}") from None
    if st == was:
        return st, ""
    return st, (f"sample type overridden: --stype {st} in place of {was} (from {source}); the checkpoint's "
                f"calibration was made with {was} and no longer applies, so calibrated is left empty")


def _onnx_scorer(path: str, stype: Optional[str], exif_transpose: bool, notes: List[str]) -> ImageScorer:
    """A scorer of an exported graph on ONNX Runtime (CPU), with the sample type, grid and calibration it was
    exported with (``--stype`` may override the sample type: the calibration is then dropped)."""
    runner, meta = scoring.onnx_model(path, "iqa")
    data_args = dict(sampling_args(meta["sampling"]), exif_transpose=bool(exif_transpose))
    st, overridden = _sample_type(meta.get("stype"), stype, f"the ONNX graph {path}")
    cal, cal_note = scoring.onnx_calibration(meta)
    if overridden:
        cal, cal_note = None, overridden
    notes.append(f"ONNX Runtime: {path} (exported from {meta.get('checkpoint')}); sampling: {st}, grid "
                 f"{data_args['fragments_h']}x{data_args['fragments_w']} of {data_args['fsize_h']}x{data_args['fsize_w']}")
    provenance = dict(scoring.checkpoint_identity(path), stype=st, sampling=data_args)
    return ImageScorer(runner, st, "cpu", path, "onnx", cal, cal_note, False, notes, provenance, data_args=data_args)


def _read_checkpoint(path: str, trust: bool) -> Tuple[Any, str, Dict[str, Any]]:
    """``(object, format, info)``: the checkpoint, its format, and its other keys (``label_stats``, ...)."""
    obj = load_checkpoint(path, as_weights=True, trust=trust)
    try:
        fmt, _ = detect_format(obj)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if fmt == "microsoft":
        raise CheckpointError(f"{path} is an ImageNet Swin-V2 backbone without a trained quality head, so it cannot "
                              "score images: train a model first (IQA/demo_train_iqa_baseline.py)")
    info = {k: v for k, v in obj.items() if k not in ("state_dict", "model")} if isinstance(obj, Mapping) else {}
    return obj, fmt, info


def _options_for(given: Optional[Dict[str, Any]], obj: Any, info: Mapping[str, Any]) -> Tuple[Dict[str, Any], str]:
    """``(options, where they come from)``: the given ones; else those the checkpoint carries (the full options,
    else its ``data`` / ``stype``); else :data:`DEFAULT_OPTIONS`."""
    if given is not None:
        return given, given["_options_path"]
    embedded = scoring.embedded_options(obj)
    if embedded is not None:
        check_options(embedded, "score")
        return dict(embedded, data=dict(embedded.get("data") or {})), "the checkpoint's options"
    if isinstance(info.get("data"), Mapping) and info.get("stype"):
        return {"data": dict(info["data"]), "stype": info["stype"]}, "the checkpoint"
    return read_scoring_options(DEFAULT_OPTIONS), DEFAULT_OPTIONS


def _load_model(opt: Mapping[str, Any], obj: Any, info: Mapping[str, Any], data_args: Mapping[str, Any], path: str,
                source: str, notes: List[str]) -> IQAModel:
    """The checkpoint's own architecture (``model_config``) or the options' model, with the checkpoint's weights;
    weights that do not fit are one error naming the file, the options and what to pass."""
    def build() -> IQAModel:
        if isinstance(info.get("model_config"), Mapping):
            try:
                model = IQAModel(**dict(info["model_config"]))
            except (TypeError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{path}: cannot rebuild the model from its model_config: {e}") from None
        else:
            model = build_model(opt)
        want = (data_args["fragments_h"] * data_args["fsize_h"], data_args["fragments_w"] * data_args["fsize_w"])
        if tuple(model.img_size) != want:
            raise OptionError(f"the model takes {model.img_size[0]}x{model.img_size[1]} inputs but the sampling grid "
                              f"gives {want[0]}x{want[1]}: use options whose data grid matches the checkpoint")
        return model

    def load(model: IQAModel) -> List[str]:
        return scoring.load_fitting(lambda: load_into_model(model, obj), path, source,
                                    "--options FILE (the options it was trained with)")

    # the file's tensors without a random initialisation first, where the file holds them all
    model, load_notes = build_with_weights(build, load, "cpu")
    notes += load_notes
    return model


# ----------------------------------------------------------------------------------------------- CLI
def list_images(folder: str, recursive: bool = False) -> List[Tuple[str, str]]:
    """``(name relative to folder, path)`` of the image files in ``folder`` (by extension), sorted."""
    return scoring.list_media(folder, IMAGE_EXTENSIONS, "image", recursive)


write_csv = scoring.write_score_csv


DESCRIPTION = ("Score images with a SAMA IQA model (raw score and, when the checkpoint allows, the score calibrated "
               "to its training set's MOS scale).")
OPTIONS_HELP = "IQA option file for model / grid / stype (default: the checkpoint's, else IQA/options/fast-sama-iqa.yml)"


def build_parser() -> argparse.ArgumentParser:
    stype = dict(choices=tuple(IQA_SAMPLE_TYPES), help="sample type (default: from the options, else sama)")
    p = scoring.scoring_parser("image", "-i", DESCRIPTION, RELEASED_WEIGHTS, OPTIONS_HELP, stype, batch_size=8)
    p.add_argument("--no-exif-transpose", dest="exif_transpose", action="store_false",
                   help="score the stored pixel grid; by default photos are turned upright by their EXIF orientation")
    return p


# Video containers by their first bytes (PIL cannot read them; the user meant VQA/vqa.py)
_VIDEO_SIGNATURES = (
    (0, b"\x1a\x45\xdf\xa3", "a Matroska / WebM video"),
    (0, b"FLV", "an FLV video"),
    (0, b"\x00\x00\x01\xba", "an MPEG program stream video"),
    (0, b"\x30\x26\xb2\x75", "an ASF / WMV video"),
)
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")  # ISO-BMFF images


def video_reason(path: str) -> Optional[str]:
    """Why ``path`` is no image if its content is a video container (MP4 / MOV, WebM, AVI, ...); None otherwise."""
    with open(path, "rb") as f:
        head = f.read(16)
    kind = next((k for offset, magic, k in _VIDEO_SIGNATURES if head[offset:].startswith(magic)), None)
    if head[4:8] == b"ftyp" and head[8:12] not in _IMAGE_BRANDS:
        kind = "an MP4 / QuickTime video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        kind = "an AVI video"
    return (f"it is {kind}, not an image (an image file is needed: {', '.join(IMAGE_EXTENSIONS[:6])} or any format "
            "PIL reads; videos are scored with VQA/vqa.py)") if kind else None


COMMANDS = ("iqa.py", "sama-iqa")  # this script and its console command


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``IQA/iqa.py``; returns the exit status (the command's own process ends at once with it:
    :func:`samacore.scoring.run_scoring`)."""
    args = build_parser().parse_args(argv)
    if not args.verbose:  # PIL's own warnings (e.g. on palette transparency): the note column says what was done
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    return scoring.run_scoring(args, load_scorer, IMAGE_EXTENSIONS, "image", {"exif_transpose": args.exif_transpose},
                               check_given=scoring.refuse_other_media("-i", video_reason), argv=argv,
                               commands=COMMANDS)


__all__ = [
    "Calibration",
    "NoCheckpointError",
    "RELEASED_WEIGHTS",
    "ScoreRow",
    "ImageScorer",
    "Scorer",
    "calibration_from_info",
    "find_default_checkpoint",
    "list_images",
    "load_scorer",
    "main",
    "read_scoring_options",
    "tensor_images",
]
