"""samacore.engine and the pieces around the loop (loaders, resume, trainer): training loop order, prediction
gathering, best-checkpoint protocol, loaders, CSV output."""
import csv
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from samacore.options import OptionError
from samacore import engine, loaders, metrics, precision, resume, runs, trainer
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.ema import ModelEMA
from samacore.losses import vqa_loss
from samacore.runlog import RunLogger
from samacore.schedules import warmup_cosine


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5]))


def step_fn(model, batch, device):
    pred = model(batch[0].to(device))
    return vqa_loss(pred, batch[1][:, None].to(device)), pred, batch[1]


def predict_fn(model, batch, device):
    return [f"{float(v):.6f}" for v in batch[1]], model(batch[0].to(device)), batch[1]


def test_train_one_epoch_steps_scheduler_and_ema_per_iteration(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    ema = ModelEMA(model, decay=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(4, 12))
    loader = loaders.build_loader(data(), {"train_batch_size": 4}, train=True)
    logger = RunLogger(str(tmp_path / "run"), use_tensorboard=False)
    stats = engine.train_one_epoch(model, loader, step_fn, opt, sched, ema, "cpu", 0, logger, progress=False)
    assert stats["iters"] == 6 and sched.last_epoch == 6  # one scheduler step per iteration
    assert stats["lr_last"] == pytest.approx(1e-2 * warmup_cosine(4, 12)(6))
    assert math.isfinite(stats["loss"]) and -1 <= stats["train_srcc"] <= 1
    assert model.training
    w_new = model.state_dict()["head.weight"]
    assert not torch.equal(w_new, before["head.weight"])
    # EMA moved towards the model but is not equal to it
    e = ema.module.state_dict()["head.weight"]
    assert not torch.equal(e, before["head.weight"]) and not torch.equal(e, w_new)


def test_nonfinite_loss_skips_steps_then_stops():
    torch.manual_seed(0)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def flaky(m, b, d):  # iterations 1 and 2 give NaN, the others a real loss
        calls.append(len(calls))
        loss, p, y = step_fn(m, b, d)
        return (loss * float("nan") if len(calls) in (2, 3) else loss), p, y

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    guard = engine.BadStepGuard(max_bad_steps=3)
    stats = engine.train_one_epoch(model, loaders.build_loader(data(8), {"train_batch_size": 2}, True), flaky, opt,
                                   sched, None, "cpu", 0, progress=False, guard=guard)
    assert stats["iters"] == 2 and stats["skipped"] == 2 and math.isfinite(stats["loss"])
    assert sched.last_epoch == 4  # the schedule still counts skipped iterations
    assert guard.in_a_row == 0 and guard.total == 2
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert not torch.equal(model.state_dict()["head.weight"], before["head.weight"])
    # always NaN: stops after max_bad_steps in a row, counting across epochs
    bad = lambda m, b, d: (torch.tensor(float("nan"), requires_grad=True), [0.0], [0.0])
    guard = engine.BadStepGuard(max_bad_steps=3)
    loader = loaders.build_loader(data(2), {}, True)
    engine.train_one_epoch(model, loader, bad, opt, None, None, "cpu", 2, progress=False, guard=guard)
    assert guard.in_a_row == 2
    with pytest.raises(FloatingPointError, match=r"not finite \(nan\) for 3 steps in a row \(last: epoch 3, iteration 0\)"):
        engine.train_one_epoch(model, loader, bad, opt, None, None, "cpu", 3, progress=False, guard=guard)


def test_a_loss_that_stays_nan_ends_a_command_in_one_line(capsys):
    """What to change (learning rate, labels, amp) is the user's to fix: one line and exit status 2, not a traceback
    under a PyTorch warning."""
    from samacore.runs import run_command

    def training():
        engine.BadStepGuard(max_bad_steps=1).check(torch.tensor(float("nan")), epoch=0, iteration=4)

    with pytest.raises(SystemExit) as e:
        run_command(training)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: training loss was not finite (nan) for 1 steps in a row (last: epoch 0, iteration 4); stopping the run. "
        "Lower the learning rate, check the labels for NaN, try without amp, or raise max_bad_steps (now 1)"]


def test_bf16_autocast_runs_matmuls_in_bf16_and_loss_in_fp32():
    torch.manual_seed(0)
    model = Tiny()
    seen = {}

    def step(m, b, d):
        pred = m(b[0])
        seen["pred"] = pred.dtype
        with precision.full_precision(d):
            loss = vqa_loss(pred.float(), b[1][:, None])
        seen["loss"] = loss.dtype
        return loss, pred, b[1]

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = engine.train_one_epoch(model, loaders.build_loader(data(8), {"train_batch_size": 4}, True), step, opt,
                                   None, None, "cpu", 0, progress=False, amp=precision.amp_mode("bf16"))
    assert seen == {"pred": torch.bfloat16, "loss": torch.float32} and math.isfinite(stats["loss"])
    loader = loaders.build_loader(data(6), {"test_batch_size": 3}, False)
    _, p32, _ = engine.predict(model, loader, predict_fn, "cpu", progress=False)
    _, p16, _ = engine.predict(model, loader, predict_fn, "cpu", progress=False, amp="bf16")
    assert p16 != p32 and p16 == pytest.approx(p32, abs=0.05)  # bf16 keeps ~3 significant digits
    assert precision.amp_mode(None) is None and precision.amp_mode("none") is None and precision.amp_mode(False) is None
    with pytest.raises(ValueError, match="allowed: none, bf16"):
        precision.amp_mode("fp16")


def _run_epochs(model, ema, opt, sched, loader, epochs, guard=None):
    for ep in epochs:
        engine.train_one_epoch(model, loader, step_fn, opt, sched, ema, "cpu", ep, progress=False, guard=guard)


def _parts(seed_model=0, opt_extra=None):
    torch.manual_seed(seed_model)
    model = Tiny()
    ema = ModelEMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(3, 30))
    loader = loaders.build_loader(data(20), {"train_batch_size": 4, "deterministic": True, **(opt_extra or {})},
                                 True, seed=5)
    return model, ema, opt, sched, loader


def test_train_state_resume_matches_uninterrupted_training(tmp_path):
    """Save after epoch 0, restore into fresh objects (different init, RNG drawn meanwhile), run epochs 1-2:
    the weights, EMA, optimiser and best trackers equal those of an uninterrupted 3-epoch run exactly."""
    ref = _parts()
    _run_epochs(*ref[:5], range(3))

    model, ema, opt, sched, loader = _parts()
    best = trainer.BestCheckpointer()
    best.update("val", dict(srcc=0.5, plcc=0.4, krcc=0.3, rmse=1.0, n=3), 0)
    logger = RunLogger(str(tmp_path / "run"), use_tensorboard=False)
    logger.row({"epoch": 0, "srcc": 0.5})
    _run_epochs(model, ema, opt, sched, loader, range(1))
    state = resume.TrainState(model, opt, sched, ema, best, {"train": loader}, logger, opt={"seed": 5, "lr": 0.01})
    state.save(str(tmp_path / "run" / resume.RESUME_FILE), epoch=0, note="x")
    logger.row({"epoch": 1, "srcc": 0.6})  # logged by the interrupted epoch: dropped on resume

    model2, ema2, opt2, sched2, loader2 = _parts(seed_model=7)
    torch.rand(100), np.random.rand(3)  # the resumed process has drawn other random numbers
    best2 = trainer.BestCheckpointer()
    logger2 = RunLogger(str(tmp_path / "run"), use_tensorboard=False)
    with pytest.raises(OptionError, match="these options differ from the run's: lr: 0.01 -> 0.02"):
        resume.load_resume(str(tmp_path / "run"), {"seed": 5, "lr": 0.02})  # another run's options: refused
    loaded = resume.load_resume(str(tmp_path / "run"), {"seed": 5, "lr": 0.01})  # a run folder is accepted
    assert loaded["note"] == "x" and loaded["epoch"] == 0
    start = resume.TrainState(model2, opt2, sched2, ema2, best2, {"train": loader2}, logger2).restore(loaded)
    assert start == 1
    _run_epochs(model2, ema2, opt2, sched2, loader2, range(start, 3))
    for a, b in ((ref[0], model2), (ref[1].module, ema2.module)):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    assert sched2.last_epoch == ref[3].last_epoch == 15
    assert best2.trackers["val"].best["srcc"] == 0.5 and best2.trackers["val"].selected_epoch == 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows == ["epoch,srcc", "0,0.5"]


def test_resume_errors_and_option_report(tmp_path, caplog):
    with pytest.raises(CheckpointError, match="has no last.pth"):
        resume.load_resume(str(tmp_path))
    with pytest.raises(CheckpointError, match="neither a run folder nor a checkpoint"):
        resume.load_resume(str(tmp_path / "nope"))
    trainer.save_epoch_checkpoint(Tiny(), str(tmp_path / "w.pth"))
    with pytest.raises(CheckpointError, match="not a resumable training state"):
        resume.load_resume(str(tmp_path / "w.pth"))
    model, ema, opt, sched, loader = _parts()
    state = resume.TrainState(model, opt, sched, ema, opt={"seed": 1, "optimizer": {"lr": 0.1}}, command="train")
    state.save(str(tmp_path / "r" / "last.pth"), 0)
    (tmp_path / "r" / ".tmp-abc.pth").write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match="saved by the train command"):
        resume.load_resume(str(tmp_path / "r"), command="finetune")
    with pytest.raises(OptionError) as e:  # another run's options are refused, naming the keys (not harmless ones)
        resume.load_resume(str(tmp_path / "r" / "last.pth"), {"seed": 1, "optimizer": {"lr": 0.2}, "progress": False})
    assert "optimizer.lr: 0.1 -> 0.2" in str(e.value) and "progress" not in str(e.value)
    resume.load_resume(str(tmp_path / "r" / "last.pth"), {"seed": 1, "optimizer": {"lr": 0.1}, "progress": False})
    assert not (tmp_path / "r" / ".tmp-abc.pth").exists()  # the interrupted save's leftover is cleaned up
    assert resume.options_diff({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c: (absent) -> 2"]


def test_deterministic_items_depend_only_on_seed_epoch_and_index():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.tensor([float(i), torch.rand(()).item(), float(np.random.rand())])

    def epoch_items(opt, ep, world=1):
        out = {}
        for rank in range(world):
            if world == 1:
                ld = loaders.build_loader(Noisy(), {"train_batch_size": 2, "deterministic": True, **opt}, True, seed=3)
            else:  # rank `rank` of a torchrun run
                sampler = loaders.TrainSampler(Noisy(), 3, rank, world, with_epoch=True)
                ld = torch.utils.data.DataLoader(loaders.ItemSeeded(Noisy(), 3), batch_size=1, sampler=sampler)
            ld.sampler.set_epoch(ep)
            for b in ld:
                out.update({int(r[0]): r[1:].tolist() for r in b})
        return out

    a0 = epoch_items({}, 0)
    torch.rand(5)
    assert epoch_items({"train_num_workers": 2}, 0) == a0  # worker count does not matter
    assert epoch_items({}, 0, world=2) == a0  # nor the number of processes
    assert epoch_items({}, 1) != a0  # a new epoch draws new augmentations
    state = torch.get_rng_state()
    Noisy_ = loaders.ItemSeeded(Noisy(), 3)
    Noisy_[(0, 1)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generators are left untouched
    # rank r of w takes positions r, r+w, ... of the one-process order
    one = list(loaders.TrainSampler(range(10), seed=1))
    assert [list(loaders.TrainSampler(range(10), 1, r, 2)) for r in (0, 1)] == [one[0::2], one[1::2]]


def test_predict_order_mode_and_metrics():
    model = Tiny().train()
    ds = data(10)
    names, preds, labels = engine.predict(model, loaders.build_loader(ds, {"test_batch_size": 3}, False), predict_fn,
                                          "cpu", progress=False)
    assert model.training  # restored
    assert labels == pytest.approx(ds.tensors[1].tolist())  # dataset order kept
    assert names[0] == f"{float(ds.tensors[1][0]):.6f}" and len(preds) == 10
    with torch.no_grad():
        assert preds == pytest.approx(model.eval()(ds.tensors[0]).view(-1).tolist(), abs=1e-6)
    m = metrics.evaluate(labels, labels)
    assert m["srcc"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(0.0, abs=1e-9) and m["n"] == 10
    unl = metrics.evaluate([1.0, 2.0], [math.nan, math.nan])
    assert math.isnan(unl["srcc"]) and not metrics.has_labels([1.0, math.nan])


def test_best_checkpointer_saves_only_on_srcc_plus_plcc_improvement(tmp_path):
    model = Tiny()
    best = trainer.BestCheckpointer(lambda key: str(tmp_path / f"m_{key}_s_dev_v0.0.pth"))
    rows = [dict(srcc=0.5, plcc=0.6, krcc=0.4, rmse=3.0, n=5),
            dict(srcc=0.7, plcc=0.3, krcc=0.5, rmse=2.0, n=5),   # sum 1.0 < 1.1: not saved, but SRCC best
            dict(srcc=0.6, plcc=0.7, krcc=0.45, rmse=2.5, n=5)]  # sum 1.3: saved
    saved = [best.update("val-a", r, ep, model=model, label_stats={"mean": 1.0}) for ep, r in enumerate(rows)]
    assert saved == [True, False, True]
    ck = load_checkpoint(str(tmp_path / "m_val-a_s_dev_v0.0.pth"))
    assert ck["validation_results"]["srcc"] == 0.6 and ck["epoch"] == 2 and ck["label_stats"] == {"mean": 1.0}
    assert set(ck["state_dict"]) == set(model.state_dict())
    t = best.trackers["val-a"]
    assert t.best["srcc"] == 0.7 and t.best_epoch["srcc"] == 1 and t.best["rmse"] == 2.0 and t.selected_epoch == 2
    s = best.summary()["val-a"]
    assert s["final_epoch"] == 2 and s["checkpoint"].endswith("m_val-a_s_dev_v0.0.pth")
    text = "\n".join(best.summary_lines())
    assert "each metric's own best epoch" in text and "selected checkpoint" in text


def test_epoch_checkpoint_and_predictions_csv(tmp_path):
    model = Tiny()
    trainer.save_epoch_checkpoint(model, str(tmp_path / "w" / "x_Epoch_00.pth"))
    ck = load_checkpoint(str(tmp_path / "w" / "x_Epoch_00.pth"))
    assert torch.equal(ck["state_dict"]["head.weight"], model.head.weight)
    path = runs.write_predictions_csv(str(tmp_path / "p.csv"), ["a", "b"], [0.25, 1.0], [3.0, math.nan],
                                        extra={"set": ["s1", "s2"]})
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["name", "pred", "gt", "set"]
    assert float(rows[0]["pred"]) == 0.25 and rows[1]["name"] == "b" and math.isnan(float(rows[1]["gt"]))
    with pytest.raises(ValueError, match="different lengths"):
        runs.write_predictions_csv(str(tmp_path / "q.csv"), ["a"], [1.0, 2.0], [1.0])


def test_build_loader_options():
    ds = data(8)
    ld = loaders.build_loader(ds, {"test_batch_size": 5, "test_num_workers": 1, "prefetch_factor": 3,
                                  "persistent_workers": True, "pin_memory": False}, train=False)
    assert ld.batch_size == 5 and ld.num_workers == 1 and ld.prefetch_factor == 3 and ld.persistent_workers
    assert not ld.pin_memory and [len(b[0]) for b in ld] == [5, 3]
    tr = loaders.build_loader(ds, {"train_batch_size": 2}, train=True, seed=1)
    order1 = torch.cat([b[1] for b in tr])
    assert sorted(order1.tolist()) == sorted(ds.tensors[1].tolist())
    sh = [list(loaders.ContiguousShardSampler(10, r, 3)) for r in range(3)]
    assert sh == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_open_run_writes_options(tmp_path):
    logger = runs.open_run(str(tmp_path / "r"), {"name": "x", "lr": 0.1, "_options_path": "/p"}, use_tensorboard=False)
    logger.row({"epoch": 0, "srcc": 0.5})
    logger.close()
    text = (tmp_path / "r" / "options.yml").read_text()
    assert "name: x" in text and "_options_path" not in text
    assert (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0] == "epoch,srcc"


DDP_UNEVEN = r'''
import os, sys
import torch
import torch.distributed as dist
from torch import nn
from samacore import engine


def run(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 1))
    g = torch.Generator().manual_seed(rank)
    # rank 1 "skipped" a whole batch of unreadable items: it has one batch fewer
    batches = [(torch.randn(2, 3, generator=g), torch.randn(2, generator=g)) for _ in range(4 - rank)]

    def step(m, batch, device):
        y_pred, y = engine.gather_batch(m(batch[0]), batch[1][:, None])
        return ((y_pred - y) ** 2).mean(), y_pred.detach(), y

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = engine.train_one_epoch(model, batches, step, opt, None, None, "cpu", 0, progress=False)
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.save({"iters": stats["iters"], "weights": weights}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.multiprocessing.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
'''


def test_ddp_ranks_with_different_batch_counts_end_the_epoch_together(tmp_path):
    """A rank with fewer batches (skipped unreadable items) must not leave the others waiting in a collective:
    all ranks stop at the shortest rank's last batch, with identical weights."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "uneven.py"
    script.write_text(DDP_UNEVEN)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got = [torch.load(tmp_path / f"rank{k}.pt") for k in (0, 1)]
    assert got[0]["iters"] == got[1]["iters"] == 3
    assert torch.equal(got[0]["weights"], got[1]["weights"])


def test_one_device_read_per_step_and_values_as_before(monkeypatch):
    """A training step reads the device once (the loss and its flags together, _sync_step): no ``.item()`` or
    ``float(tensor)`` per step, predictions read back once per epoch; the loss and train SRCC are those of a loop
    that read everything per step."""
    reads = {"item": 0, "tolist": 0, "float": 0}
    for name, method in (("item", "item"), ("tolist", "tolist"), ("float", "__float__")):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    losses = []

    def recording(m, b, d):
        loss, p, y = step_fn(m, b, d)
        losses.append(loss.detach().clone())
        return loss, p, y

    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = loaders.build_loader(data(12), {"train_batch_size": 3}, True)
    stats = engine.train_one_epoch(model, loader, recording, opt, None, None, "cpu", 0, progress=False)
    monkeypatch.undo()
    # 4 steps + preds and labels at the end; the loader's own CPU reads: its sampler's permutation (tolist) and
    # its workers' base seed (item)
    assert stats["iters"] == 4 and reads == {"item": 1, "tolist": 4 + 2 + 1, "float": 0}
    assert stats["loss"] == sum(float(x) for x in losses) / 4
