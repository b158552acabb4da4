"""Shared pieces of the SAMA IQA and VQA trees.

Both `samavqa` (video) and `samaiqa` (image) import from here: quality metrics, losses, EMA, learning-rate
schedules, optimiser parameter groups, option loading and plugins, registries, label files as data, checkpoint
I/O, run logging, distributed helpers, the one training loop (``trainer``: ``engine`` steps, ``loaders``,
``resume``, ``precision``, ``splits``), the commands' run plumbing (``runs``) and scoring command
(``scoring``), and the scaling-and-masking sampling pipeline with the registry of sample types.
"""

__version__ = "0.1.0"
