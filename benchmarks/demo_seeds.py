#!/usr/bin/env python
"""The CPU demos over several seeds: final-epoch held-out SRCC / PLCC of each run, their mean and range (a script,
not a test: about 4 minutes per VQA run and 3 per IQA run on 2 cores).

Each run is the demo's own training command (``make demo``'s options) with ``--set seed=N`` and its own run
folder, so the demo's ``runs/`` and ``pretrained_weights/`` stay as they are. ``default`` in ``--seeds`` is the
option file's own seed (the ``make demo`` run: VQA 42, IQA 44442)::

    python benchmarks/demo_seeds.py                          # both demos: their own seed, then 1, 2, 3, 4
    python benchmarks/demo_seeds.py --trees vqa --seeds 1,2  # some of them
    python benchmarks/demo_seeds.py --out /tmp/seeds         # keep the run folders (default: a temporary folder)

Build the examplar data first (``make data``). The figures go in the README's demo section; with this few held-out
items (56 videos, 21 photos) single runs move by several hundredths.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMOS = {  # tree -> (training script, option file)
    "vqa": ("VQA/demo_train.py", "VQA/options/examplar-SAMA-train.yml"),
    "iqa": ("IQA/demo_train_iqa_baseline.py", "IQA/options/examplar-sama-iqa.yml"),
}


def train(tree: str, seed: str, out: str, options: str) -> Tuple[float, float]:
    """One demo run with ``seed`` (``default``: the file's); its final-epoch held-out (SRCC, PLCC) from the run's
    summary.json."""
    script, default_options = DEMOS[tree]
    name = f"{tree}-seed-{seed}"
    run_dir = os.path.join(out, name)
    cmd = [sys.executable, script, "-o", options or default_options, "--no-progress", "--overwrite",
           "--set", f"name={name}", "--set", f"run_dir={run_dir}",
           "--set", f"save_dir={os.path.join(out, name + '-weights')}"]
    if seed != "default":
        cmd += ["--set", f"seed={int(seed)}"]
    with open(os.path.join(out, name + ".log"), "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    with open(os.path.join(run_dir, "summary.json")) as f:
        final = json.load(f)["results"][0]["final"]
    return final["srcc"], final["plcc"]


def describe(values: List[float]) -> str:
    return f"mean {statistics.mean(values):.3f}, range {min(values):.3f}-{max(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="default,1,2,3,4",
                    help="comma-separated seeds; default = the option file's (default: default,1,2,3,4)")
    ap.add_argument("--trees", default="vqa,iqa", help="vqa, iqa or both (comma-separated)")
    ap.add_argument("--options", help="another option file (one tree only)")
    ap.add_argument("--out", help="folder for the runs (default: a temporary folder, removed at the end)")
    args = ap.parse_args()
    seeds = args.seeds.split(",")
    trees = args.trees.split(",")
    if args.options and len(trees) != 1:
        ap.error("--options applies to one tree: give --trees vqa or --trees iqa")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.abspath(args.out or tmp)
        os.makedirs(out, exist_ok=True)
        for tree in trees:
            results: Dict[str, Tuple[float, float]] = {}
            for seed in seeds:
                results[seed] = train(tree, seed, out, args.options)
                print(f"{tree} seed {seed}: final-epoch held-out SRCC {results[seed][0]:.3f}, "
                      f"PLCC {results[seed][1]:.3f}", flush=True)
            print(f"{tree}, {len(seeds)} seeds: SRCC {describe([r[0] for r in results.values()])}; "
                  f"PLCC {describe([r[1] for r in results.values()])}", flush=True)


if __name__ == "__main__":
    main()
