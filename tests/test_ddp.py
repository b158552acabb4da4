"""torchrun (DDP, gloo, 2 CPU processes) trains and evaluates like one process.

One epoch of 2 processes x batch 2 against 1 process x batch 4 on the same tiny videos, deterministic mode
(every item's random sampling depends only on seed, epoch and index) and a tiny backbone without stochastic
depth or dropout: the sample order, the global batches and (through the gathered batch-level loss) the
gradients are those of the one-process run, up to float summation order -- so metrics agree to ~1e-5, not
bit for bit. Sharded evaluation gathered back is checked bit for bit against one-process evaluation.
"""
import csv
import json

import pytest
import torch
import yaml

from helpers import result_row, torchrun
from samacore.checkpoint import load_checkpoint
from samavqa import cli
from samavqa.models import swin3d

NAME = "ddp"
BACKBONE = "swin_nano_nodrop"
REGISTER = ("from samavqa.models import swin3d\n"
            f"swin3d.register_backbone({BACKBONE!r}, swin3d.SwinConfig(embed_dim=24, depths=(1, 2, 1, 2), "
            "num_heads=(1, 2, 2, 4), drop_path_rate=0.0))\n")
LAUNCH = ("import torch\n" + REGISTER + "from samacore.runs import run_command\nfrom samavqa import cli\n"
          "run_command(cli.train_main)\n")


def options(data, path, batch):
    model = {"type": "DiViDeAddEvaluator",
             "args": {**data.model["args"], "backbone_size": BACKBONE,
                      "vqa_head": {"in_channels": 192, "hidden_channels": 16, "dropout_ratio": 0.0}}}
    opt = {"name": NAME, "num_epochs": 1, "warmup_epochs": 0.5, "train_batch_size": batch, "test_batch_size": 2,
           "stype": "sama", "progress": False, "seed": 3, "deterministic": True, "device": "cpu",
           "model": model,
           "data": {"train": {"type": "FusionDataset", "args": {
                        "phase": "train", "anno_file": str(data.root / "labels.txt"),
                        "data_prefix": str(data.root / "videos"),
                        "sample_types": {"fragments": dict(data.frag, num_clips=1)}}},
                    "val-small": {"type": "FusionDataset", "args": {
                        "phase": "test", "anno_file": str(data.root / "val.txt"),
                        "data_prefix": str(data.root / "videos"),
                        "sample_types": {"fragments": dict(data.frag, num_clips=2)}}}},
           "load_path": str(data.root / "k400_nano.pth")}
    path.write_text(yaml.safe_dump(opt))
    return str(path)




def test_two_processes_match_one(vqa_data, tmp_path, monkeypatch, one_thread):
    swin3d.register_backbone(BACKBONE, swin3d.SwinConfig(embed_dim=24, depths=(1, 2, 1, 2), num_heads=(1, 2, 2, 4),
                                                        drop_path_rate=0.0))  # as REGISTER, in this process
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    # -- torchrun: 2 processes x batch 2
    (tmp_path / "launch.py").write_text(LAUNCH)
    r = torchrun(tmp_path / "launch.py", ["-o", options(vqa_data, tmp_path / "two.yml", batch=2)], tmp_path / "two")
    assert "torchrun: 2 processes" in r.stdout and r.stdout.count("[val-small] final epoch 0") == 1  # rank 0 logs
    # -- one process x batch 4, same global batches
    monkeypatch.chdir(tmp_path / "one")
    one = cli.train_main(["-o", options(vqa_data, tmp_path / "one.yml", batch=4)])
    two = json.load(open(tmp_path / "two" / "runs" / NAME / "summary.json"))
    for m in ("srcc", "plcc", "krcc", "rmse"):
        assert result_row(two, "val-small")["final"][m] == pytest.approx(result_row(one, "val-small")["final"][m], abs=1e-5)
    rows = [list(csv.DictReader(open(d / "runs" / NAME / "metrics.csv"))) for d in (tmp_path / "one", tmp_path / "two")]
    assert [r["set"] for r in rows[0]] == [r["set"] for r in rows[1]] == ["train", "val-small"]
    for key in ("loss", "srcc", "lr_head"):
        assert float(rows[1][0][key]) == pytest.approx(float(rows[0][0][key]), abs=1e-5)
    w1 = load_checkpoint(str(tmp_path / "one" / "pretrained_weights" / f"{NAME}_Epoch_00.pth"))["state_dict"]
    w2 = load_checkpoint(str(tmp_path / "two" / "pretrained_weights" / f"{NAME}_Epoch_00.pth"))["state_dict"]
    for k, v in w1.items():
        # the losses are shift-invariant, so the last bias gets a ~0 gradient made of rounding noise, which
        # AdamW normalises to a full-size step of random sign: that one tensor is left out
        if k != "vqa_head.fc_last.bias":
            assert torch.allclose(v.float(), w2[k].float(), atol=1e-5), k
    # -- sharded evaluation (2 ranks, gathered) == one-process evaluation of the same EMA weights, bit for bit
    best = tmp_path / "two" / "pretrained_weights" / f"{NAME}_val-small_s_dev_v0.0.pth"
    stored = load_checkpoint(str(best))["validation_results"]
    test_opt = yaml.safe_load(open(tmp_path / "two.yml"))
    test_opt.update(load_path=str(best), run_dir=str(tmp_path / "test"))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test_opt))
    got = result_row(cli.test_main(["-o", str(tmp_path / "test.yml")]), "val-small")["metrics"]
    for m in ("srcc", "plcc", "krcc", "rmse"):
        assert got[m] == stored[m]
