"""Draw what a SAMA sampler feeds the model: `python VQA/visualize_sampling.py -v VIDEO --stype sama --out F.png`.

Shows one clip's sampled frames (de-normalised), each frame pair's scale factor, the mask (spm / swm) and the
fragment grid on the source frame; `--quality-map --ckpt CKPT` overlays the model's per-position scores.
See samavqa.visualize.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_here), _here]  # the repo's packages, also when not installed

from samacore.startup import launch  # noqa: E402  (standard library only)

if __name__ == "__main__":
    sys.exit(launch("samavqa.visualize:main"))
