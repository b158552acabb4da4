"""DDP with encoders whose ``forward_features`` leaves parameters out: a 2-process torchrun IQA training on timm's
``convnext_atto`` (its ``head.norm`` is used only by ``forward_head``) trains past step 2, which failed with DDP's
"Expected to have finished reduction in the prior iteration" while find_unused_parameters was off. The probe in
samacore.distributed.wrap_ddp finds such parameters once and freezes them, so DDP needs no per-step graph search."""
import json
import os

import torch
from torch import nn

from helpers import GRID, REPO, torchrun, write_graded_images, write_yaml
from samacore import distributed as D


def test_convnext_trains_under_two_processes(tmp_path, one_thread):
    write_graded_images(tmp_path, [f"im{i}.png" for i in range(10)], [20 + 20 * i for i in range(10)],
                        [(40, 48)] * 10, label_digits=1, label_div=1)
    opt = {"name": "cnx", "stype": "fragment", "num_epochs": 1, "warmup_epochs": 0.5, "batch_size": 2,
           "num_workers": 0, "test_batch_size": 2, "test_num_workers": 0, "num_splits": 1, "seed": 0,
           "data": {"database": "syn", "data_info": str(tmp_path / "info.txt"), "data_prefix": str(tmp_path), **GRID},
           "model": {"backbone": "convnext_atto", "drop_path_rate": 0.0, "hidden_channels": 8},
           "run_dir": str(tmp_path / "run"), "progress": False}
    r = torchrun(os.path.join(REPO, "IQA", "demo_train_iqa_baseline.py"), ["-o", write_yaml(tmp_path / "o.yml", opt)],
                 tmp_path, timeout=240)
    assert r.stderr.count("frozen: backbone.head.norm.bias, backbone.head.norm.weight") == 1  # said by rank 0
    result = json.load(open(tmp_path / "run" / "summary.json"))["results"][0]
    assert result["final"]["n"] == 2 and all(map(float, (result["final"]["srcc"], result["final"]["plcc"])))


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(3, 1), nn.Linear(3, 1)
        self.register_buffer("index", torch.arange(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_probe_finds_unused_parameters_and_leaves_no_trace():
    torch.manual_seed(0)
    model = _Branchy()
    before = torch.get_rng_state()

    def probe(m):
        torch.rand(5)  # a probe that draws random numbers (dropout, random crops) must not shift later draws
        return m(torch.ones(2, 3)).sum()

    assert D.unused_parameters(model, probe) == ["unused.weight", "unused.bias"]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())  # the probe's gradients are not left to the first step


def test_buffers_are_synchronised_only_for_running_statistics(tmp_path):
    """The models' only buffers are constant index tables (Swin's relative_position_index): DDP does not re-send
    them every step; a model with BatchNorm running statistics keeps the per-step broadcast."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        constant = D.wrap_ddp(_Branchy())
        batchnorm = D.wrap_ddp(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))
    finally:
        dist.destroy_process_group()
    assert getattr(constant, D._BUFFER_SYNC_ARG) is False and getattr(batchnorm, D._BUFFER_SYNC_ARG) is True
