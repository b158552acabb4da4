"""SAMA IQA training (10-split protocol): `python IQA/demo_train_iqa_baseline.py -o OPTIONS.yml`, or
`sama-train-iqa -o OPTIONS.yml` (see samaiqa.cli.train_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samaiqa.cli import train_command  # noqa: E402

if __name__ == "__main__":
    train_command()
