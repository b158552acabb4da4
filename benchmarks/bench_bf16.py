#!/usr/bin/env python
"""How much bfloat16 autocast (``--bf16``) changes scores on the CPU, and how much time it saves (a script, not a
test).

Scores the examplar set twice in one process, fp32 and ``bf16``, with the same scorer settings:

* the VQA demo checkpoint (``make demo-vqa``: ``pretrained_weights/examplar-SAMA_val-examplar_s_dev_v0.0.pth``) on
  the 231 examplar videos;
* the IQA demo checkpoint (``make demo-iqa``: ``runs/examplar-sama-iqa/examplar-sama-iqa_split00_examplar_s_dev.pth``)
  on the 119 examplar photos;

and prints, per tree: the largest and mean |bf16 - fp32| (raw scores; relative to the spread of the fp32 scores
too), SRCC / PLCC of each precision against the labels, SRCC between the two, and the wall time of each pass.
Whether bf16 is fast depends on the CPU: AVX512-BF16 / AMX run bfloat16 dot products natively; without them
oneDNN converts and bf16 is slower. The forward-pass speed on the released architectures is measured by
``bench_scoring.py --with bf16``.

    python benchmarks/bench_bf16.py [--vqa-ckpt F] [--iqa-ckpt F] [--trees vqa,iqa]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "VQA"), os.path.join(REPO, "IQA")]

import torch  # noqa: E402,F401  (torch before decord)
import numpy as np  # noqa: E402

VQA_CKPT = "pretrained_weights/examplar-SAMA_val-examplar_s_dev_v0.0.pth"
VQA_OPTIONS = "VQA/options/examplar-SAMA-test.yml"
IQA_CKPT = "runs/examplar-sama-iqa/examplar-sama-iqa_split00_examplar_s_dev.pth"
IQA_OPTIONS = "IQA/options/examplar-sama-iqa.yml"


def labelled(formats, labels: str, folder: str) -> Tuple[List[str], np.ndarray]:
    """Paths and labels of an examplar label file, read by the tree's own label reader (``LABEL_FORMATS``)."""
    read = formats.read(os.path.join(REPO, labels), os.path.join(REPO, folder))
    return list(read.paths), np.asarray(read.labels, dtype=np.float64)


def scores_both(load_scorer, ckpt: str, options: str, paths: List[str]) -> Dict[str, Tuple[np.ndarray, float]]:
    """``{"fp32": (scores, seconds), "bf16": (...)}``, the two passes after one warm-up file."""
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        scorer = load_scorer(os.path.join(REPO, ckpt), os.path.join(REPO, options), device="cpu", bf16=bf16)
        scorer.score_paths(paths[:1], progress=False)
        start = time.perf_counter()
        rows = scorer.score_paths(paths, progress=False)
        out[name] = (np.asarray([r.score for r in rows], dtype=np.float64), time.perf_counter() - start)
    return out


def report(tree: str, labels: np.ndarray, result: Dict[str, Tuple[np.ndarray, float]]) -> None:
    from scipy import stats

    fp32, bf16 = result["fp32"][0], result["bf16"][0]
    diff = np.abs(bf16 - fp32)
    spread = float(fp32.std())
    print(f"{tree}: {len(fp32)} files")
    print(f"  |bf16 - fp32|: max {diff.max():.4g}, mean {diff.mean():.4g} (fp32 scores' std {spread:.4g}: "
          f"max {diff.max() / spread:.2%} of it)")
    for name in ("fp32", "bf16"):
        s, seconds = result[name]
        print(f"  {name}: SRCC {stats.spearmanr(s, labels)[0]:.4f}, PLCC {stats.pearsonr(s, labels)[0]:.4f} "
              f"against the labels; {seconds:.1f} s")
    print(f"  SRCC(bf16, fp32) {stats.spearmanr(bf16, fp32)[0]:.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vqa-ckpt", default=VQA_CKPT)
    ap.add_argument("--iqa-ckpt", default=IQA_CKPT)
    ap.add_argument("--trees", default="vqa,iqa")
    args = ap.parse_args()
    trees = args.trees.split(",")
    if "vqa" in trees:
        from samavqa.labels import LABEL_FORMATS
        from samavqa.score import load_scorer

        paths, labels = labelled(LABEL_FORMATS, "examplar_data_labels/examplar_vqa/labels.txt", "data/examplar/vqa")
        report("vqa", labels, scores_both(load_scorer, args.vqa_ckpt, VQA_OPTIONS, paths))
    if "iqa" in trees:
        from samaiqa.labels import LABEL_FORMATS
        from samaiqa.score import load_scorer

        paths, labels = labelled(LABEL_FORMATS, "examplar_data_labels/examplar_iqa/labels.txt", "data/examplar/iqa")
        report("iqa", labels, scores_both(load_scorer, args.iqa_ckpt, IQA_OPTIONS, paths))


if __name__ == "__main__":
    main()
