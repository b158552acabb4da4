"""EMA warm-up (option ``ema_warmup``): the decay at update t is min(ema_decay, (1 + t) / (10 + t)); without it the
original's constant 0.999, which every paper option file keeps; the update count survives ``--resume``."""
import glob
import os

import pytest
import torch
from torch import nn

from samacore.ema import ModelEMA
from samacore.resume import TrainState, load_resume
from samacore.trainer import build_ema
from samaiqa.schema import load_iqa_options
from samavqa.schema import load_vqa_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hand_decay(t, decay=0.999, warmup=True):
    return min(decay, (1 + t) / (10 + t)) if warmup else decay


@pytest.mark.parametrize("t, expected", [(0, 0.1), (1, 2 / 11), (10, 11 / 20), (1000, 1001 / 1010),
                                         (8990, 0.999), (100000, 0.999)])
def test_decay_with_warmup(t, expected):
    ema = ModelEMA(nn.Linear(2, 1), 0.999, warmup=True)
    assert ema.decay_at(t) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("t", [0, 1, 10, 1000])
def test_decay_without_warmup_is_constant(t):
    assert ModelEMA(nn.Linear(2, 1), 0.999).decay_at(t) == 0.999


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_after_k_updates_equals_the_formula(warmup):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = ModelEMA(model, 0.999, warmup=warmup)
    expected = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for t in range(25):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        ema.update(model)
        d = hand_decay(t, warmup=warmup)
        for n, p in model.named_parameters():
            expected[n] = d * expected[n] + (1 - d) * p.detach().double()
    assert ema.updates == 25
    for n, p in ema.module.named_parameters():
        torch.testing.assert_close(p.double(), expected[n], rtol=0, atol=1e-6)


@pytest.mark.parametrize("warmup, initial_share", [(True, 0.0), (False, 0.999 ** 128)])
def test_short_run_keeps_little_of_the_initial_weights_only_with_warmup(warmup, initial_share):
    """After 128 updates towards fixed weights, the initial weights' share in the EMA is the product of the
    decays: ~0 with warm-up (prod (1 + t) / (10 + t) < 1e-11), 0.88 with the constant 0.999 (the issue's figure)."""
    model = nn.Linear(4, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    ema = ModelEMA(model, 0.999, warmup=warmup)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    for _ in range(128):
        ema.update(model)
    share = ema.module.weight.mean().item()  # initial 1, target 0
    assert share == pytest.approx(initial_share, abs=1e-5)  # float32 accumulation


PAPER_VQA = ["fast-SAMA-train.yml", "fast-SAMA-finetune.yml"] + [
    os.path.basename(f) for f in glob.glob(os.path.join(REPO, "VQA", "options", "FAST_VQA_*.yml"))]


@pytest.mark.parametrize("name", PAPER_VQA + ["fast-sama-iqa.yml"])
def test_paper_options_keep_the_constant_decay(name):
    if name.endswith("iqa.yml"):
        opt = load_iqa_options(os.path.join(REPO, "IQA", "options", name), train=True)
    else:
        opt = load_vqa_options(os.path.join(REPO, "VQA", "options", name))
    assert "ema_warmup" not in opt
    ema = build_ema(nn.Linear(2, 1), opt)
    if ema is None:  # test-only files (FAST-VQA releases) train nothing
        assert opt.get("ema") is False
        return
    assert not ema.warmup and [ema.decay_at(t) for t in (0, 1, 10, 1000)] == [0.999] * 4


@pytest.mark.parametrize("path", ["VQA/options/examplar-SAMA-train.yml", "VQA/options/examplar-SAMA-train-full.yml",
                                  "IQA/options/examplar-sama-iqa.yml"])
def test_examplar_options_warm_up(path):
    full = os.path.join(REPO, path)
    opt = load_iqa_options(full, train=True) if path.startswith("IQA") else load_vqa_options(full)
    ema = build_ema(nn.Linear(2, 1), opt)
    assert ema.warmup and ema.decay_at(0) == pytest.approx(0.1)


def test_resume_keeps_the_update_count(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    ema = ModelEMA(model, 0.999, warmup=True)
    for _ in range(7):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()
        ema.update(model)
    TrainState(model, optimizer, ema=ema, opt={"ema_warmup": True}).save(str(tmp_path / "last.pth"), epoch=0)

    fresh_model = nn.Linear(3, 1)
    fresh = ModelEMA(fresh_model, 0.999, warmup=True)
    state = load_resume(str(tmp_path))
    assert state["ema_updates"] == 7
    TrainState(fresh_model, torch.optim.AdamW(fresh_model.parameters(), lr=0.1), ema=fresh).restore(state)
    assert fresh.updates == 7 and fresh.decay_at(fresh.updates) == pytest.approx(8 / 17)
    for a, b in zip(fresh.module.parameters(), ema.module.parameters()):
        assert torch.equal(a, b)
    # the next update of both uses the decay of update 7, not the first update's 0.1
    ema.update(model)
    fresh.update(model)
    for a, b in zip(fresh.module.parameters(), ema.module.parameters()):
        assert torch.equal(a, b)
