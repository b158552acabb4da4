"""Score videos with a trained SAMA model: `python VQA/vqa.py -v VIDEO [-v VIDEO ...] | --dir DIR | --list FILE`
(the same as the console command `sama-vqa`).

One video prints its score; several write `name,score,calibrated,error,note` CSV rows (--output FILE, default stdout).
See samavqa.score for the checkpoint / options lookup and the calibration rule.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

import torch  # noqa: E402,F401  (torch before decord: the other order can hang)

from samavqa.score import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
