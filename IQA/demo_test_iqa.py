"""SAMA IQA test: `python IQA/demo_test_iqa.py -o OPTIONS.yml --output PRED.csv` (see samaiqa.cli.test_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.runs import run_command  # noqa: E402
from samaiqa.cli import test_main  # noqa: E402

if __name__ == "__main__":
    run_command(test_main)
