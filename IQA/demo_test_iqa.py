"""SAMA IQA test: `python IQA/demo_test_iqa.py -o OPTIONS.yml --output PRED.csv`, or `sama-test-iqa ...` (see
samaiqa.cli.test_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-test-iqa"  # the same as this console command: samaiqa.cli:test_command

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
