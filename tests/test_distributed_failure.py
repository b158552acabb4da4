"""One rank fails, every rank ends: a 2-process torchrun (gloo) training whose backbone raises on rank 1 at its
second training step ends both processes within seconds, with the reason, and a non-zero exit status (before,
the failing rank could hang in teardown and the other wait in a collective until its timeout). And the share of
unreadable items is judged against each rank's own shard."""
import os
import re
import runpy
import time

import pytest

from helpers import REPO, torchrun, vqa_train_options, write_yaml
from samacore import distributed as D
from samacore.robust import BadItem, BadItemLog, TooManyBadItems

# the plugin of the GPU check's failure case: backbone "gpu_check_failing", raising on rank 1 at its 2nd step
PLUGIN = runpy.run_path(os.path.join(REPO, "benchmarks", "gpu_check.py"))["FAILING_PLUGIN"]

LAUNCH = "from samacore.runs import run_command\nfrom samavqa import cli\nrun_command(cli.train_main)\n"


def test_one_failing_rank_ends_every_rank_with_the_reason(vqa_data, tmp_path, one_thread):
    (tmp_path / "failing.py").write_text(PLUGIN)
    (tmp_path / "launch.py").write_text(LAUNCH)
    model = {**vqa_data.model, "args": {**vqa_data.model["args"], "backbone_size": "gpu_check_failing"}}
    opt = vqa_train_options(vqa_data.root, "fail", train_batch_size=2, model=model,
                            plugins=[str(tmp_path / "failing.py")])
    tic = time.monotonic()
    r = torchrun(tmp_path / "launch.py", ["-o", write_yaml(tmp_path / "fail.yml", opt)], tmp_path, check=False,
                 timeout=240)
    elapsed = time.monotonic() - tic
    out = r.stdout + r.stderr
    assert r.returncode != 0
    # the failing rank's own traceback (it ends first: torchrun would stop it before it said anything otherwise) ...
    assert any(re.fullmatch(r"(\[rank1\]: )?RuntimeError: gpu-check: planned failure of rank 1", line)
               for line in out.splitlines()), out[-3000:]
    assert "error: rank 1 failed: RuntimeError: gpu-check: planned failure of rank 1" in out  # ... and rank 0's why
    assert elapsed < 150, elapsed  # seconds of work; a hang would last until the collective timeout (30 min)


def test_bad_share_is_judged_against_the_ranks_shard(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "is_dist", lambda: True)
    monkeypatch.setattr(D, "rank", lambda: 1)
    monkeypatch.setattr(D, "world_size", lambda: 4)
    log = BadItemLog(0.25, str(tmp_path / "skipped.txt"))
    log.record(BadItem(0, "a.mp4", "unreadable"), "train", total=4)  # 1 of a 4-item shard: at the limit
    with pytest.raises(TooManyBadItems, match=r"2 of 4 items of train \(rank 1's share of 4\) \(50\.0%\)"):
        log.record(BadItem(1, "b.mp4", "unreadable"), "train", total=4)
    assert (tmp_path / "skipped.txt.rank1").exists()


def test_skipping_loader_counts_the_samplers_share():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from samacore.loaders import ContiguousShardSampler
    from samacore.robust import SkipBadItems, SkippingLoader, _share

    data = SkipBadItems(TensorDataset(torch.arange(10.0)))
    shard = DataLoader(data, sampler=ContiguousShardSampler(10, 1, 4), batch_size=2)
    assert _share(SkippingLoader(shard, BadItemLog(), "val")) == 3  # rank 1 of 4 over 10 items: [2, 5)
    assert _share(SkippingLoader(DataLoader(data, batch_size=2), BadItemLog(), "val")) == 10


def test_the_failing_rank_waits_until_the_others_have_read_why(monkeypatch):
    """Its exit makes torchrun stop the others: they must have read (and said) the reason first. The wait ends
    when every other rank has counted itself, or after READ_WAIT_S."""
    import threading

    import torch.distributed as dist

    store = dist.HashStore()
    monkeypatch.setattr(D, "_store", lambda: store)
    monkeypatch.setattr(D, "world_size", lambda: 3)
    readers = [threading.Timer(0.3, D._count_as_read), threading.Timer(0.6, D._count_as_read)]
    for r in readers:
        r.start()
    tic = time.monotonic()
    D._wait_until_read()
    assert 0.6 + 0.5 <= time.monotonic() - tic < D.READ_WAIT_S  # both read, then a moment to print and exit
    monkeypatch.setattr(D, "READ_WAIT_S", 1.0)
    monkeypatch.setattr(D, "world_size", lambda: 4)  # a third reader never comes: the wait is bounded
    tic = time.monotonic()
    D._wait_until_read()
    assert 1.0 <= time.monotonic() - tic < 2.5
