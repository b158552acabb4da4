"""Score videos with a trained SAMA model: `python VQA/vqa.py -v VIDEO [-v VIDEO ...] | --dir DIR | --list FILE`
(the same as the console command `sama-vqa`).

One video prints its score; several write `name,score,calibrated,error,note` CSV rows (--output FILE, default stdout).
See samavqa.score for the checkpoint / options lookup and the calibration rule.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-vqa"  # the same as this console command: samavqa.score:main

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
