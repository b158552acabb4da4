#!/usr/bin/env python3
"""Build the examplar VQA/IQA sets (media under data/examplar/, labels under examplar_data_labels/).

A thin wrapper around :mod:`samadata.examplar` (also the ``sama-build-examplar`` command); run
``python tools/build_examplar_data.py --help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/: the samadata package, also when not installed

from samadata.examplar import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
