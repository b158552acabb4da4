"""Behaviour of the shared package: metrics, losses, EMA, schedules, options and checkpoint I/O."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from samacore import checkpoint as ck
from samacore.ema import ModelEMA
from samacore.losses import LOSSES, plcc_loss, rank_loss, vqa_loss
from samacore.metrics import BestTracker, aggregate, compute_metrics, rescale
from samacore.optim import build_optimizer
from samacore.options import OptionError, check_keys, choice, load_options, resolve_path, typed
from samacore.runlog import RunLogger
from samacore.schedules import warmup_constant, warmup_cosine

from helpers import REPO


def test_rescale_maps_onto_label_statistics():
    pred = np.array([0.1, 0.4, 0.2, 0.9])
    gt = np.array([10.0, 30.0, 20.0, 80.0])
    out = rescale(pred, gt)
    assert out.mean() == pytest.approx(gt.mean())
    assert out.std() == pytest.approx(gt.std())
    assert np.argsort(out).tolist() == np.argsort(pred).tolist()


def test_metrics_are_invariant_to_affine_prediction_scale():
    rng = np.random.default_rng(0)
    gt = rng.normal(50, 10, 40)
    pred = gt + rng.normal(0, 5, 40)
    a, b = compute_metrics(pred, gt), compute_metrics(3 * pred - 7, gt)
    for m in ("srcc", "plcc", "krcc", "rmse"):
        assert a[m] == pytest.approx(b[m])
    assert a["n"] == 40 and 0.7 < a["srcc"] <= 1
    perfect = compute_metrics(gt * 2 + 1, gt)
    assert perfect["srcc"] == pytest.approx(1) and perfect["rmse"] == pytest.approx(0, abs=1e-9)


def test_metrics_degenerate_inputs_give_nan():
    out = compute_metrics([1.0, 1.0, 1.0], [1, 2, 3])
    assert math.isnan(out["srcc"]) and out["n"] == 3
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        compute_metrics([1, 2, 3], [1, 2])


def test_best_tracker_tracks_each_metric_and_selection_separately():
    t = BestTracker()
    assert t.update({"srcc": 0.5, "plcc": 0.6, "krcc": 0.4, "rmse": 3.0}, 0)
    assert not t.update({"srcc": 0.7, "plcc": 0.3, "krcc": 0.5, "rmse": 2.0}, 1)  # 1.0 < 1.1
    assert t.best == {"srcc": 0.7, "plcc": 0.6, "krcc": 0.5, "rmse": 2.0}
    assert t.best_epoch == {"srcc": 1, "plcc": 0, "krcc": 1, "rmse": 1}
    assert t.selected_epoch == 0 and t.last_epoch == 1
    lines = t.summary_lines("val")
    assert "each metric's own best epoch" in lines[0] and "selected checkpoint" in lines[2]
    agg = aggregate([{"srcc": 1, "plcc": 2, "krcc": 3, "rmse": 4}, {"srcc": 3, "plcc": 2, "krcc": 1, "rmse": 0},
                     {"srcc": 2, "plcc": 2, "krcc": 2, "rmse": 8}])
    assert agg["median"]["srcc"] == 2 and agg["mean"]["rmse"] == 4


def test_losses_reward_correct_order_and_correlation():
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    good, bad = y * 2 + 1, -y
    assert plcc_loss(good, y) < 1e-6
    assert plcc_loss(bad, y) == pytest.approx(0.5)  # anti-correlated: (4/4 + 0) / 2
    assert rank_loss(good, y) == 0
    assert rank_loss(bad, y) > 0
    assert vqa_loss(bad, y) == pytest.approx(plcc_loss(bad, y) + 0.3 * rank_loss(bad, y))
    assert rank_loss(torch.ones(1, 1), torch.ones(1, 1)) == 0


def test_named_objectives():
    """``smooth_l1`` regresses the labels (the original IQA loss); ``plcc_rank`` is the VQA objective, scale-free."""
    y = torch.tensor([60.0, 70.0, 80.0, 50.0])
    near = y + torch.tensor([0.5, -0.5, 0.2, -0.2])
    assert LOSSES.get("smooth_l1")(near, y) == pytest.approx(torch.nn.functional.smooth_l1_loss(near, y).item())
    plcc_rank = LOSSES.get("plcc_rank")
    assert plcc_rank(y, y) < 1e-6
    assert plcc_rank(y / 100 - 3, y).item() == pytest.approx(plcc_rank(y, y).item(), abs=1e-6)  # any affine scale of the labels
    assert plcc_rank(-y, y).item() == pytest.approx(vqa_loss(-y.view(-1, 1), y.view(-1, 1)).item())
    with pytest.raises(ValueError, match="registered losses: plcc_rank, smooth_l1"):
        LOSSES.get("mse")


def test_ema_follows_the_update_rule_and_skips_buffers():
    model = nn.BatchNorm1d(3)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((3,), 0.9 * 1 + 0.1 * 2))
    assert torch.all(ema.module.running_mean == 0)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_schedules_match_the_recipes():
    f = warmup_cosine(10, 100)
    assert f(0) == 0 and f(5) == 0.5 and f(10) == 1
    assert f(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))
    g = warmup_constant(10)
    assert g(0) == 0.01 and g(5) == 0.5 and g(10) == 1 and g(1000) == 1


@pytest.mark.parametrize("lr_schedule", [None, "constant", "cosine"])
def test_iqa_lr_schedule_option(lr_schedule):
    """IQA ``lr_schedule``: absent or ``constant`` is the original's warm-up then constant; ``cosine`` is the VQA
    recipe's warm-up and cosine over all epochs, so a run ends near lr 0."""
    from samaiqa.recipe import schedule

    opt = {"num_epochs": 10, "warmup_epochs": 1, **({"lr_schedule": lr_schedule} if lr_schedule else {})}
    f = schedule(opt)([20])  # 20 iterations an epoch: 200 in all, 20 of warm-up
    if lr_schedule == "cosine":
        assert [f(i) for i in (0, 10, 20, 110)] == [warmup_cosine(20, 200)(i) for i in (0, 10, 20, 110)]
        assert f(10) == 0.5 and f(20) == 1 and f(199) < 0.03
    else:
        assert [f(i) for i in (0, 10, 20, 110, 199)] == [0.01, 0.5, 1, 1, 1]


def test_backbone_children_get_the_lower_learning_rate():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fragments_backbone = nn.Linear(2, 2)
            self.vqa_head = nn.Linear(2, 1)

    opt = build_optimizer(M(), lr=1e-3, backbone_lr_mult=0.1, wd=0.05)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"fragments_backbone": pytest.approx(1e-4), "vqa_head": pytest.approx(1e-3)}
    assert all(g["weight_decay"] == 0.05 for g in opt.param_groups)


def test_options_errors_name_the_key_and_suggest(tmp_path, monkeypatch):
    with pytest.raises(OptionError, match=r"unknown option data\.anno_fle \(did you mean 'anno_file'\?\)"):
        check_keys({"anno_fle": 1}, ["anno_file", "data_prefix"], "data")
    with pytest.raises(OptionError, match="missing required option data.data_prefix"):
        check_keys({}, ["data_prefix"], "data", required=["data_prefix"])
    with pytest.raises(OptionError, match="choose one of: sama, fragments"):
        choice("samma", ["sama", "fragments"], "stype")
    with pytest.raises(OptionError, match="num_epochs must be int"):
        typed({"num_epochs": "3"}, "num_epochs", int, "options")
    assert typed({"lr": 1}, "lr", float, "optimizer") == 1.0
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "o.yml").write_text("name: x\nlr: !!float 1e-3\n")
    monkeypatch.chdir(tmp_path)
    opt = load_options("o.yml", search_dirs=[str(tmp_path / "sub")])
    assert opt["name"] == "x" and opt["lr"] == 1e-3
    with pytest.raises(OptionError, match="option file 'nope.yml' not found"):
        load_options("nope.yml")
    assert resolve_path("o.yml", [str(tmp_path / "sub")]) == str(tmp_path / "sub" / "o.yml")


def test_checkpoint_roundtrip_is_atomic_and_safe(tmp_path):
    path = str(tmp_path / "w" / "m.pth")
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    ck.save_checkpoint({"state_dict": model.state_dict()}, path)
    assert os.listdir(tmp_path / "w") == ["m.pth"]  # no temporary left behind
    other = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    rep = ck.load_state_dict_checked(other, ck.load_checkpoint(path)["state_dict"])
    assert rep.loaded == 4 and not rep.missing
    assert torch.equal(other[0].weight, model[0].weight)

    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("1.")}
    with pytest.raises(ck.CheckpointError, match=r"lacks 2 learnable tensors: 1\.weight, 1\.bias"):
        ck.load_state_dict_checked(other, partial)
    rep = ck.load_state_dict_checked(other, dict(partial, extra=torch.zeros(1)), allow_partial=True)
    assert rep.missing == ["1.weight", "1.bias"] and rep.unexpected == ["extra"]
    with pytest.raises(ck.CheckpointError, match="wrong shape"):
        ck.load_state_dict_checked(other, {**model.state_dict(), "0.weight": torch.zeros(5, 5)})

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = str(tmp_path / "evil.pth")
    torch.save({"x": Evil()}, bad)
    with pytest.raises(ck.CheckpointError, match="evil.pth"):
        ck.load_checkpoint(bad)
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_checkpoint(str(tmp_path / "missing.pth"))


def test_run_logger_writes_csv_and_jsonl(tmp_path):
    log = RunLogger(str(tmp_path), use_tensorboard=False)
    log.row({"epoch": 0, "srcc": 0.5})
    log.row({"epoch": 1, "srcc": 0.6, "plcc": float("nan")})
    log.close()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,srcc,plcc" and lines[2].startswith("1,0.6")
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1] == {"epoch": 1, "srcc": 0.6, "plcc": None}


def test_calibration_note_shows_the_sign_once():
    from samacore.calibration import Calibration, calibration_from_info

    stats = {"mean": 50.0, "std": 10.0, "n": 5, "pred_mean": -0.077, "pred_std": 0.2}
    note = calibration_from_info({"label_stats": stats})[1]
    assert note.startswith("calibrated = 50 + 10 * (score + 0.077) / 0.2  (") and "- -" not in note
    assert "(score - 0.077)" in Calibration(50.0, 10.0, 0.077, 0.2).describe()
    assert "(score - 0) " in Calibration(50.0, 10.0, -0.0, 0.2).describe()
    cal = Calibration(50.0, 10.0, -0.077, 0.2)
    assert cal(0.123) == pytest.approx(50.0 + 10.0 * (0.123 + 0.077) / 0.2)  # the note says what the map does


@pytest.mark.skipif(sys.platform != "linux", reason="the setting is glibc's")
def test_scoring_processes_serve_big_tensors_from_the_heap():
    """With :func:`reuse_freed_memory` a 64 MB tensor comes from the heap (whose freed pages serve the next tensor)
    instead of a mapping of its own that is returned, and zeroed again, at every allocation."""
    probe = ("import ctypes, sys, torch\n"
             "from samacore.utils import reuse_freed_memory\n"
             "class Info(ctypes.Structure):\n"
             "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',"
             " 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
             "libc = ctypes.CDLL('libc.so.6'); libc.mallinfo2.restype = Info\n"
             "set_ = sys.argv[1] == 'set' and reuse_freed_memory()\n"
             "x = torch.empty(16 * 2**20)\n"
             "print(set_, libc.mallinfo2().hblkhd >= x.nbytes)\n")
    run = lambda arg: subprocess.run([sys.executable, "-c", probe, arg], capture_output=True, text=True, check=True,
                                     cwd=REPO).stdout.split()
    assert run("set") == ["True", "False"]  # set, and the tensor is not in a mapping of its own
    assert run("no") == ["False", "True"]
