"""SAMA IQA training (10-split protocol): `python IQA/demo_train_iqa_baseline.py -o OPTIONS.yml` (see samaiqa.cli.train_main)."""
import os
import sys

try:
    import samaiqa  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # run from a checkout without installing: make the repo's packages importable
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.dirname(_here), _here]

from samaiqa.cli import train_main, run_command  # noqa: E402

if __name__ == "__main__":
    run_command(train_main)
