"""Build script for the optional C kernel of samacore.resample (everything else is in pyproject.toml).

The extension is optional: where no C compiler is available the install still succeeds and sampling runs on the
pure-PyTorch engine (``samacore.resample.backend()`` says which one is in use).
"""
import hashlib
import pathlib
import sys

from setuptools import Extension, setup

SOURCE = "samacore/_cresample.c"

# -ffp-contract=off: no fused multiply-adds, so values do not depend on the CPU; -fno-trapping-math lets the
# compiler evaluate both lerp formulas and select one (vectorisable) instead of branching per pixel.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-trapping-math"]

# the module records which source it was built from, so that an edited source is not run as a stale build
DIGEST = hashlib.sha256((pathlib.Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(ext_modules=[Extension("samacore._cresample", [SOURCE], extra_compile_args=FLAGS, optional=True,
                             define_macros=[("SAMA_SOURCE_SHA256", f'"{DIGEST}"')])])
