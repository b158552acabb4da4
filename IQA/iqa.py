"""Score images with a SAMA IQA model: `python IQA/iqa.py -i IMAGE [-i IMAGE ...] | --dir DIR` (see samaiqa.score)."""
import os
import sys

try:
    import samaiqa  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # run from a checkout without installing: make the repo's packages importable
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.dirname(_here), _here]

from samaiqa.score import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
