"""SAMA IQA training (10-split protocol): `python IQA/demo_train_iqa_baseline.py -o OPTIONS.yml`, or
`sama-train-iqa -o OPTIONS.yml` (see samaiqa.cli.train_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-train-iqa"  # the same as this console command: samaiqa.cli:train_command

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
