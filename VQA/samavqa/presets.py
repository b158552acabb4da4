"""Released models by name, for scoring: ``vqa.py -m NAME`` / ``sama-vqa -m NAME`` / ``load_scorer(model=NAME)``,
as FAST-VQA's ``vqa.py -m`` chooses its models.

A preset names an option file (in ``VQA/options/``: the model and its test sampling) and the weight file it
expects in ``pretrained_weights/``, with where to download that file. :data:`PRESETS` is the one registry: the
command line's choices and help, ``--list-models`` and the download hints of a missing released checkpoint
(``vqa.py``, ``demo_test.py``) all read it. A new released model is one :func:`register_preset` call.

There is no IQA preset: the SAMA authors publish VQA weights only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from samacore.checkpoint import CheckpointError
from samacore.options import OptionError
from samacore.registry import Registry

__all__ = ["PRESETS", "Preset", "WEIGHT_FOLDERS", "find_weights", "list_presets", "missing_checkpoint",
           "preset_for_weights", "preset_of", "register_preset", "resolve_preset"]

OPTIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "options")
#: where a preset's weight file is looked for, under each search root (the working directory, the repository root)
WEIGHT_FOLDERS = ("pretrained_weights", os.path.join("VQA", "pretrained_weights"))


@dataclass(frozen=True)
class Preset:
    """A released model: ``options`` (a file in ``VQA/options/``, or an absolute path), ``weights`` (the file name expected in
    ``pretrained_weights/``), ``url`` where the weights are published (``mirror``: another place), ``source``
    (who publishes them) and a short ``description``."""

    name: str
    options: str
    weights: str
    url: str
    source: str
    description: str
    mirror: str = ""
    #: FAST-VQA's [0, 1] score, ``sigmoid((raw - mean) / std)``: the (mean, std) its ``vqa.py`` publishes for this
    #: model (``mean_stds``); None: the model has no such score
    unit_mean_std: Optional[Tuple[float, float]] = None

    @property
    def options_path(self) -> str:
        return os.path.join(OPTIONS_DIR, self.options)

    def download_hint(self) -> str:
        """What to do to get the weights, as the messages say it (one clause)."""
        also = f"; also {self.mirror}" if self.mirror else ""
        return f"download {self.weights} from {self.source} ({self.url}{also}) into pretrained_weights/"


PRESETS: Registry[Preset] = Registry("model", "models")


def register_preset(preset: Preset) -> Preset:
    """Add a released model to :data:`PRESETS` (under ``preset.name``)."""
    return PRESETS.register(preset.name, preset)


register_preset(Preset(
    "SAMA", "fast-SAMA-test.yml", "SAMA-baseline_val-ltest_s_dev_v0.0.pth",
    "https://drive.google.com/drive/folders/1adB3aB8gBMx7c38tEfgls-i6QNZJI8nF", "the SAMA authors",
    "SAMA (AAAI 2024) trained on LSVQ: Video Swin-T, 4 clips x 32 frames, scaled 7x7 fragments of 32",
    mirror="Baidu https://pan.baidu.com/s/1KTicZ2WX8BN7GTgr9PX6ZQ?pwd=xyns, code xyns"))
# FAST-VQA's five released configurations (its vqa.py -m names), weights from one release
_FAST_VQA_RELEASE = "https://github.com/TimothyHTimothy/FAST-VQA/releases/download/v2.0.0/"
# (mean, std) of the [0, 1] score: mean_stds in FAST-VQA's vqa.py (VQAssessment/FAST-VQA-and-FasterVQA)
for _name, _options, _weights, _description, _mean_std in (
    ("FAST-VQA", "FAST_VQA_B_1_4.yml", "FAST_VQA_B_1_4.pth",
     "FAST-VQA-B (ECCV 2022) trained on LSVQ: 4 clips x 32 frames, 7x7 fragments of 32", (-0.110198185, 0.04178565)),
    ("FAST-VQA-M", "FAST_VQA_M_1_4.yml", "FAST_VQA_M_1_4.pth",
     "FAST-VQA-M, the mobile version: 4 clips x 16 frames, 4x4 fragments of 32", (0.023889644, 0.030781006)),
    ("FasterVQA", "FAST_VQA_3D_1_1.yml", "FAST_VQA_3D_1_1.pth",
     "FasterVQA (FAST-VQA-B-3D, TPAMI 2023): 1 clip of 8 temporal fragments x 4 frames, 7x7 fragments of 32",
     (0.14759505, 0.03613452)),
    ("FasterVQA-MS", "FAST_VQA_3D_1_1-MS.yml", "FAST_VQA_3D_1_1.pth",
     "the FasterVQA weights at a smaller spatial scale: 5x5 fragments of 32", (0.15218826, 0.03230298)),
    ("FasterVQA-MT", "FAST_VQA_3D_1_1-MT.yml", "FAST_VQA_3D_1_1.pth",
     "the FasterVQA weights on half the frames: 1 clip of 4 temporal fragments x 4 frames", (0.14699507, 0.036453716)),
):
    register_preset(Preset(_name, _options, _weights, _FAST_VQA_RELEASE + _weights,
                           "the FAST-VQA authors' v2.0.0 release", _description, unit_mean_std=_mean_std))


def _candidates(preset: Preset, roots: Sequence[str]) -> List[str]:
    return [os.path.join(root, folder, preset.weights) for root in roots for folder in WEIGHT_FOLDERS]


def find_weights(preset: Preset, roots: Sequence[str]) -> str:
    """The preset's weight file: the first ``pretrained_weights/`` (or ``VQA/pretrained_weights/``) under
    ``roots`` that holds it; else one-line :class:`~samacore.checkpoint.CheckpointError` naming the file and
    where to download it."""
    for path in _candidates(preset, roots):
        if os.path.isfile(path):
            return path
    looked = ", ".join(os.path.abspath(r) for r in roots)
    raise CheckpointError(f"model {preset.name}: weight file pretrained_weights/{preset.weights} not found (looked "
                          f"under {looked}): {preset.download_hint()}, or pass --ckpt FILE")


def resolve_preset(name: str, ckpt: Optional[str], options: Any, roots: Sequence[str]) -> Tuple[Preset, str, Any]:
    """``(preset, checkpoint, options)`` for ``-m name``: the preset's weight file (:func:`find_weights`) unless
    ``ckpt`` is given, its option file unless ``options`` is given. An unknown name is an
    :class:`~samacore.options.OptionError` listing the presets."""
    try:
        preset = PRESETS.get(name)
    except ValueError as e:
        raise OptionError(f"--model: {e}") from None
    return (preset, find_weights(preset, roots) if ckpt is None else ckpt,
            preset.options_path if options is None else options)


def preset_for_weights(path: str) -> Optional[Preset]:
    """The first preset whose weight file has ``path``'s file name (None: not a released model's file)."""
    name = os.path.basename(str(path))
    return next((p for _, p in PRESETS.items() if p.weights == name), None)


def preset_of(checkpoint: str, options_path: str) -> Optional[Preset]:
    """The preset whose weight file name and option file both match (FasterVQA-MS / -MT share FasterVQA's
    weights, so the options decide); None when the pair is not a released model."""
    name = os.path.basename(str(checkpoint))
    same = lambda a, b: os.path.abspath(str(a)) == os.path.abspath(str(b))
    return next((p for _, p in PRESETS.items() if p.weights == name and same(p.options_path, options_path)), None)


def missing_checkpoint(path: str, what: str = "") -> CheckpointError:
    """The error for a checkpoint file that does not exist (``what``: e.g. `` (load_path)``); for a released
    model's file name it also says where to download it -- the same hint ``vqa.py`` gives."""
    preset = preset_for_weights(path)
    hint = f": the released {preset.name} weights; {preset.download_hint()}" if preset else ""
    return CheckpointError(f"checkpoint file not found: {path}{what}{hint}")


def list_presets(roots: Sequence[str], out: TextIO) -> None:
    """Print the presets as a table (name, weight file and whether it is found, option file, description), then
    where to download the missing weight files (``--list-models``)."""
    rows = [("model", "weights (pretrained_weights/)", "found", "options (VQA/options/)", "description")]
    missing: Dict[str, List[Preset]] = {}  # weight file -> the presets that need it
    for name, preset in PRESETS.items():
        found = any(os.path.isfile(p) for p in _candidates(preset, roots))
        rows.append((name, preset.weights, "yes" if found else "no", preset.options, preset.description))
        if not found:
            missing.setdefault(preset.weights, []).append(preset)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4] + "\n")
    out.write(f"(weights looked for in pretrained_weights/ under {', '.join(os.path.abspath(r) for r in roots)})\n")
    for needing in missing.values():
        out.write(f"to use {', '.join(p.name for p in needing)}: {needing[0].download_hint()}\n")
