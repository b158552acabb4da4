"""SAMA VQA test: `python VQA/demo_test.py -o OPTIONS.yml` or `sama-test-vqa -o OPTIONS.yml`
(see samavqa.cli.test_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

import torch  # noqa: E402,F401  (torch before decord: the other order can hang)

from samavqa.cli import test_command  # noqa: E402

if __name__ == "__main__":
    test_command()
