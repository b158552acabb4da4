"""Export a trained SAMA VQA model to ONNX: `python VQA/export_onnx.py --ckpt CKPT [--options OPT | -m NAME]
--output model.onnx` (the same as the console command `sama-export-vqa`; see samavqa.export_onnx)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

import torch  # noqa: E402,F401  (torch before decord: the other order can hang)

from samavqa.export_onnx import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
