"""A resume needs nothing else: ``--resume RUN`` alone continues a run with the options its folder holds (the
weights it started from may be gone); options of another run are refused naming the keys that differ; a run
folder that holds a run is not started over unless ``--overwrite``; Ctrl-C says what was saved and how to go on."""
import shutil

import pytest

from helpers import result_row, GRID, SMALL_SWIN, vqa_train_options, write_yaml
from samacore import runs, trainer
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.options import OptionError

from samaiqa import cli as iqa_cli  # imported here: their loggers hold the stdout of import time
from samavqa import cli as vqa_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def vqa_options(vqa_data, folder, name="alone", **over):
    """Tiny VQA training options (relative run_dir / save_dir) whose load_path is a copy that can be deleted."""
    shutil.copy(vqa_data.root / "k400_nano.pth", folder / "k400_copy.pth")
    opt = vqa_train_options(vqa_data.root, name, load_path=str(folder / "k400_copy.pth"), run_dir=f"runs/{name}",
                            save_dir="weights", **over)
    return write_yaml(folder / f"{name}.yml", opt)


def test_vqa_resume_alone_continues_with_the_runs_options(vqa_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = vqa_options(vqa_data, tmp_path)
    first = vqa_cli.train_main(["-o", opt, "--stop-after-epochs", "1"])
    assert "stopped after 1 epoch" in first["stopped"]
    (tmp_path / "k400_copy.pth").unlink()  # the resumed run needs neither the option file's weights ...
    (tmp_path / "alone.yml").unlink()      # ... nor the option file
    done = vqa_cli.train_main(["--resume", "runs/alone"])
    assert "stopped" not in done and result_row(done, "val-small")["final_epoch"] == 1
    assert load_checkpoint("runs/alone/last.pth")["epoch"] == 1


def test_a_run_resumed_from_elsewhere_continues_in_its_own_folder(vqa_data, tmp_path, monkeypatch):
    """``--resume DIR`` went on in ``runs/{name}`` of the working directory: a copy of a run, or a run resumed from
    another folder, overwrote the ``last.pth`` of whatever run was there (and left DIR as it was)."""
    monkeypatch.chdir(tmp_path)
    opt = vqa_options(vqa_data, tmp_path, num_epochs=2)
    vqa_cli.train_main(["-o", opt, "--stop-after-epochs", "1"])
    shutil.copytree("runs/alone", "copies/alone-copy")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    done = vqa_cli.train_main(["--resume", "../copies/alone-copy"])
    assert result_row(done, "val-small")["final_epoch"] == 1
    assert load_checkpoint(str(tmp_path / "copies/alone-copy/last.pth"))["epoch"] == 1  # continued where asked
    assert load_checkpoint(str(tmp_path / "runs/alone/last.pth"))["epoch"] == 0        # the original untouched
    assert not (tmp_path / "elsewhere" / "runs").exists()
    rows = (tmp_path / "copies/alone-copy/metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + 2 epochs of the one run (train and val rows)


def test_a_state_of_the_other_tree_or_command_is_named_as_such(vqa_data, iqa_images, tmp_path, monkeypatch):
    """Resuming another tree's run read its options as this tree's (``unknown option options.loss``), or with
    ``-o`` listed every key as a difference."""
    monkeypatch.chdir(tmp_path)
    vqa_cli.train_main(["-o", vqa_options(vqa_data, tmp_path, num_epochs=1)])
    iqa = {"name": "ia", "num_epochs": 1, "batch_size": 4, "num_workers": 0, "num_splits": 1, "run_dir": "runs/ia",
           "data": {"database": "syn", "data_info": str(iqa_images), "data_prefix": str(iqa_images.parent), **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    said = r"runs/alone/last\.pth was saved by the VQA train command; it cannot resume IQA train: resume it with the " \
           r"VQA tree's command$"
    for argv in (["--resume", "runs/alone"], ["-o", write_yaml(tmp_path / "ia.yml", iqa), "--resume", "runs/alone"]):
        with pytest.raises(CheckpointError, match=said):
            iqa_cli.train_main(argv)
    with pytest.raises(CheckpointError, match=r"was saved by the train command; it cannot resume finetune$"):
        vqa_cli.finetune_main(["--resume", "runs/alone"])


def test_resume_with_overwrite_is_refused(vqa_data, tmp_path, monkeypatch):
    """``--resume RUN --overwrite`` went on with the run, ignoring ``--overwrite`` without a word."""
    monkeypatch.chdir(tmp_path)
    opt = vqa_options(vqa_data, tmp_path, num_epochs=2)
    vqa_cli.train_main(["-o", opt, "--stop-after-epochs", "1"])
    with pytest.raises(OptionError, match=r"^--resume and --overwrite contradict each other: --resume runs/alone "
                                          r"continues that run, --overwrite starts afresh over it; give one of them$"):
        vqa_cli.train_main(["--resume", "runs/alone", "--overwrite"])
    assert load_checkpoint("runs/alone/last.pth")["epoch"] == 0  # untouched


def test_vqa_options_of_another_run_are_refused(vqa_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vqa_cli.train_main(["-o", vqa_options(vqa_data, tmp_path, "a", num_epochs=1)])
    other = vqa_options(vqa_data, tmp_path, "b", num_epochs=3, seed=9, train_num_workers=0, device="cpu")
    with pytest.raises(OptionError) as e:
        vqa_cli.train_main(["-o", other, "--resume", "runs/a"])
    message = str(e.value)
    assert "name: 'a' -> 'b'" in message and "num_epochs: 1 -> 3" in message and "seed: 3 -> 9" in message
    assert "device" not in message and "run_dir" not in message  # harmless keys (RESUME_HARMLESS_KEYS)


def test_a_run_folder_holding_a_run_is_not_started_over(vqa_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = vqa_options(vqa_data, tmp_path, "again", num_epochs=1)
    vqa_cli.train_main(["-o", opt])
    for extra in ([], ["--stop-after-epochs", "0"]):
        with pytest.raises(OptionError, match=r"runs/again already holds a run \(last\.pth, summary\.json\): "
                                              r"continue it with --resume .*--overwrite"):
            vqa_cli.train_main(["-o", opt, *extra])
    stamp = (tmp_path / "runs/again/last.pth").stat().st_mtime_ns
    summary = vqa_cli.train_main(["-o", opt, "--overwrite"])
    assert result_row(summary, "val-small")["final_epoch"] == 0
    assert (tmp_path / "runs/again/last.pth").stat().st_mtime_ns != stamp
    assert len((tmp_path / "runs/again/metrics.csv").read_text().splitlines()) == 3  # header + this run's 2 rows


def test_iqa_resume_alone(iqa_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = {"name": "ia", "stype": "sama", "num_epochs": 2, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "num_splits": 1, "progress": False, "run_dir": "runs/ia",
           "data": {"database": "syn", "data_info": str(iqa_images), "data_prefix": str(iqa_images.parent), **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    iqa_cli.train_main(["-o", write_yaml(tmp_path / "ia.yml", opt), "--stop-after-epochs", "1"])
    (tmp_path / "ia.yml").unlink()
    done = iqa_cli.train_main(["--resume", "runs/ia"])
    assert [r["split"] for r in done["results"]] == [0] and "stopped" not in done


def test_ctrl_c_says_what_was_saved_and_how_to_continue(vqa_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    opt = vqa_options(vqa_data, tmp_path, "intr", num_epochs=3)
    real = trainer.train_one_epoch
    calls = []

    def interrupted_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_in_second_epoch)
    monkeypatch.setattr("sys.argv", ["VQA/demo_train.py", "-o", opt])
    with pytest.raises(SystemExit) as e:
        runs.run_command(vqa_cli.train_main)
    assert e.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted (Ctrl-C): the state after epoch 0 is saved in runs/intr/last.pth; continue with: "
                   "python VQA/demo_train.py --resume runs/intr"]
    assert load_checkpoint("runs/intr/last.pth")["epoch"] == 0


def test_ctrl_c_names_the_split_of_a_multi_split_run(tmp_path, monkeypatch):
    from samacore.context import RunContext, interrupted_message

    monkeypatch.chdir(tmp_path)
    ctx = RunContext.for_run({}, False, str(tmp_path / "runs" / "iq"))
    assert interrupted_message("sama-train-iqa") == ("interrupted (Ctrl-C) before the first epoch finished: no state "
                                                     "saved in runs/iq yet")
    ctx.state_saved(3, ", at split 01 epoch 03")
    assert interrupted_message("sama-train-iqa") == ("interrupted (Ctrl-C): the state after split 01 epoch 03 is saved "
                                                     "in runs/iq/last.pth; continue with: sama-train-iqa --resume "
                                                     "runs/iq")


def test_samacore_imports_form_no_cycle():
    """The command line (runs) sits above the loop (trainer), which sits above its settings (context) and the
    resume state (resume): no module of samacore imports one that imports it back, even for types only."""
    import ast
    import os

    from helpers import REPO

    root = os.path.join(REPO, "samacore")
    modules = {f[:-3] for f in os.listdir(root) if f.endswith(".py")}
    graph = {}
    for m in modules:
        deps = set()
        for node in ast.walk(ast.parse(open(os.path.join(root, m + ".py")).read())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("samacore"):
                deps |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
        graph[m] = deps & modules

    def reaches(start, target, seen):
        return any(d == target or (d not in seen and reaches(d, target, seen | {d})) for d in graph[start])

    assert [m for m in sorted(modules) if reaches(m, m, {m})] == []
    assert "context" in graph["runs"] and "context" in graph["trainer"] and "runs" not in graph["trainer"]


def test_a_real_ctrl_c_ends_in_one_line(vqa_data, tmp_path):
    """SIGINT to a training process once its first state is saved: one line on stderr, exit status 130, the state
    kept."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import REPO

    opt = vqa_options(vqa_data, tmp_path, "sig", num_epochs=50)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # SIGINT handled as in a terminal even when pytest runs in the background (where the shell ignores it)
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "VQA", "demo_train.py"), "-o", opt], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = tmp_path / "runs" / "sig" / "last.pth"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-3000:]
    [line] = err.strip().splitlines()
    assert line.startswith("interrupted (Ctrl-C): the state after epoch ") and line.endswith(
        f"is saved in runs/sig/last.pth; continue with: python {os.path.join(REPO, 'VQA', 'demo_train.py')} "
        "--resume runs/sig")
    assert load_checkpoint(str(state))["epoch"] >= 0
