"""Export a trained SAMA IQA model to ONNX: `python IQA/export_onnx.py --ckpt CKPT [--options OPT] --output model.onnx`
(the same as the console command `sama-export-iqa`; see samaiqa.export_onnx)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import COMMANDS, launch  # noqa: E402  (standard library only)

COMMAND = "sama-export-iqa"  # the same as this console command: samaiqa.export_onnx:main

if __name__ == "__main__":
    sys.exit(launch(COMMANDS[COMMAND]))
