"""Score images with a SAMA IQA model: `python IQA/iqa.py -i IMAGE ... | --dir DIR | --list FILE` (the same as the
console command `sama-iqa`; see samaiqa.score)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-iqa"  # the same as this console command: samaiqa.score:main

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
