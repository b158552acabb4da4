"""SAMA VQA finetune: `python VQA/demo_finetune.py -o OPTIONS.yml` or `sama-finetune-vqa -o OPTIONS.yml`
(see samavqa.cli.finetune_main)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-finetune-vqa"  # the same as this console command: samavqa.cli:finetune_command

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
