"""SAMA VQA finetune: `python VQA/demo_finetune.py -o OPTIONS.yml` or `sama-finetune-vqa -o OPTIONS.yml`
(see samavqa.cli.finetune_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

import torch  # noqa: E402,F401  (torch before decord: the other order can hang)

from samavqa.cli import finetune_command  # noqa: E402

if __name__ == "__main__":
    finetune_command()
