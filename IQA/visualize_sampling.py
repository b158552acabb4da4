"""Draw how SAMA samples an image: `python IQA/visualize_sampling.py -i IMAGE --stype sama --out FILE.png`
(add `--quality-map --ckpt CKPT` for the per-token scores; see samaiqa.visualize)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import launch  # noqa: E402  (standard library only)

if __name__ == "__main__":
    sys.exit(launch("samaiqa.visualize:main"))
