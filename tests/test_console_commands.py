"""The console commands `pip install -e .` installs (pyproject [project.scripts]), run through pip's entry points:
each is the very function its script runs, `--help` works and equals the function's own help, a bad option file
ends in one line with exit status 2, and `sama-iqa` scores an image exactly as `IQA/iqa.py` does."""
import gc
import os
import runpy
import signal
import subprocess
import sys
import sysconfig
import time
import weakref
from importlib.metadata import entry_points
from types import SimpleNamespace
from typing import Dict, List, Sequence

import pytest

from helpers import REPO
from samacore import startup
from test_iqa_score import make_images, small_checkpoint

# command -> (entry point, its script, the name the script calls)
COMMANDS = {
    "sama-vqa": ("samavqa.score:main", "VQA/vqa.py", "main"),
    "sama-iqa": ("samaiqa.score:main", "IQA/iqa.py", "main"),
    "sama-train-vqa": ("samavqa.cli:train_command", "VQA/demo_train.py", "train_command"),
    "sama-finetune-vqa": ("samavqa.cli:finetune_command", "VQA/demo_finetune.py", "finetune_command"),
    "sama-test-vqa": ("samavqa.cli:test_command", "VQA/demo_test.py", "test_command"),
    "sama-train-iqa": ("samaiqa.cli:train_command", "IQA/demo_train_iqa_baseline.py", "train_command"),
    "sama-test-iqa": ("samaiqa.cli:test_command", "IQA/demo_test_iqa.py", "test_command"),
    "sama-export-vqa": ("samavqa.export_onnx:main", "VQA/export_onnx.py", "main"),
    "sama-export-iqa": ("samaiqa.export_onnx:main", "IQA/export_onnx.py", "main"),
}
SCORING_INPUT = {"sama-vqa": ["-v", "a.mp4"], "sama-iqa": ["-i", "a.jpg"]}  # the files the scorers need on the line
ENV = dict(os.environ, COLUMNS="100")  # argparse wraps help at the terminal width: the same in both


def executable(name: str) -> str:
    """The console script pip wrote for ``name`` beside the running interpreter (``.venv/bin/``)."""
    path = os.path.join(sysconfig.get_path("scripts"), name)
    assert os.path.isfile(path), f"{path} is missing: install the project (pip install -e .) to get its commands"
    return path


def run_all(commands: Sequence[Sequence[str]], cwd: str) -> List[subprocess.CompletedProcess]:
    """Run the commands two at a time (each starts PyTorch: seconds of CPU), in order of the results."""
    done: List[subprocess.CompletedProcess] = []
    for start in range(0, len(commands), 2):
        procs = [subprocess.Popen(list(c), cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for c in commands[start:start + 2]]
        for c, p in zip(commands[start:start + 2], procs):
            out, err = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(list(c), p.returncode, out, err))
    return done


def call(name: str, argv: Sequence[str], monkeypatch) -> int:
    """Run the entry point's function as its console script does (``sys.exit(fn())``), in this process."""
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == name][:1]
    monkeypatch.setattr(sys, "argv", [name, *argv])
    try:
        rc = ep.load()()
    except SystemExit as e:
        rc = e.code
    finally:
        gc.unfreeze()  # the command froze what the imports made (startup.imports_uncollected): pytest's objects too
    return int(rc or 0)


def test_each_command_is_the_function_its_script_runs(monkeypatch):
    eps: Dict[str, object] = {}
    for ep in entry_points(group="console_scripts"):
        eps.setdefault(ep.name, ep)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put the repository on sys.path
    assert set(startup.COMMANDS) == set(COMMANDS)
    for name, (target, script, attr) in COMMANDS.items():
        assert name in eps, f"no console command {name}: reinstall the project (pip install -e .)"
        assert eps[name].dist.name == "sama-quality"
        assert eps[name].value == f"samacore.startup:{name.replace('-', '_')}", "reinstall (pip install -e .)"
        assert startup.COMMANDS[name] == target and target.endswith(":" + attr)
        script_globals = runpy.run_path(os.path.join(REPO, script), run_name="not_main")
        assert startup.COMMANDS[script_globals["COMMAND"]] == target, f"{script} does not run {target}"
        executable(name)


def wait_until_torch_loads(pid: int) -> None:
    """Until PyTorch's C++ library is mapped into the process: it is then inside ``import torch``, which goes on
    for half a second or more after that (its Python modules)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        with open(f"/proc/{pid}/maps") as f:
            if "libtorch_cpu" in f.read():
                return
        time.sleep(0.01)
    raise AssertionError("the command did not start importing PyTorch within 120 s")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="watches the process's memory map in /proc")
def test_ctrl_c_while_a_command_starts_is_one_line(tmp_path):
    """SIGINT while PyTorch is being imported (the first second of every command): one line, exit status 130."""
    for command in ([executable("sama-vqa"), "--help"], [sys.executable, os.path.join(REPO, "IQA", "iqa.py"), "--help"]):
        # SIGINT handled as in a terminal even when pytest runs in the background (where the shell ignores it)
        proc = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_until_torch_loads(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and out == "", (command, err[-2000:])
        assert err.splitlines() == [startup.STARTING_MESSAGE], (command, err[-2000:])


def test_starting_gives_the_previous_handler_back():
    # Python's own handler for the test's duration: where pytest runs in the background SIGINT is ignored, and
    # starting() then leaves it so
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with startup.starting():
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with startup.starting():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outside)


class _Node:
    other: "_Node"


def _cycle() -> "weakref.ref":
    """A weak reference to a pair of objects that refer to each other (only the cyclic collector frees them)."""
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_imports_uncollected_pauses_the_collector_and_freezes_what_the_block_made():
    was_enabled = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            with startup.imports_uncollected():
                assert not gc.isenabled()
                made_inside = _cycle()
            assert gc.isenabled() is enabled  # as it was before the block
            made_after = _cycle()
            gc.collect()
            assert made_inside() is not None and made_after() is None  # frozen: left alone; later objects: freed
            gc.unfreeze()
            gc.collect()
            assert made_inside() is None  # nothing else kept it
    finally:
        gc.unfreeze()
        (gc.enable if was_enabled else gc.disable)()


BAD_OPTIONS = "name: x\ndata: {val: 1\n"  # an unclosed mapping


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The executables, started once for the tests below (each start imports PyTorch: seconds of CPU):
    ``help[name]`` (``--help``), ``bad`` (a bad option file), ``score`` / ``script`` (``sama-iqa`` and ``IQA/iqa.py``
    on one image with a tiny checkpoint); plus the files they were given."""
    root = tmp_path_factory.mktemp("commands")
    (root / "bad.yml").write_text(BAD_OPTIONS)
    ckpt, _ = small_checkpoint(root / "c.pth")
    image = make_images(str(root), 1)[0]
    scoring = ["-i", image, "--ckpt", ckpt, "--device", "cpu"]
    commands = [[executable(name), "--help"] for name in COMMANDS] + [
        [executable("sama-test-vqa"), "-o", str(root / "bad.yml")],
        [executable("sama-iqa"), *scoring], [sys.executable, os.path.join(REPO, "IQA", "iqa.py"), *scoring]]
    results = run_all(commands, str(root))
    return SimpleNamespace(help=dict(zip(COMMANDS, results)), bad=results[-3], score=results[-2], script=results[-1],
                           bad_options=str(root / "bad.yml"), image=image)


def test_help_of_each_command_is_its_functions_help(ran, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", ENV["COLUMNS"])
    results = [ran.help[name] for name in COMMANDS]
    for name, r in zip(COMMANDS, results):
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr[-2000:])
        assert call(name, ["--help"], monkeypatch) == 0
        assert r.stdout == capsys.readouterr().out  # the same parser: same arguments, same defaults
        assert r.stdout.startswith(f"usage: {name} [-h]")
    vqa, train = results[0].stdout, results[2].stdout
    assert "-m NAME, --model NAME" in vqa and "--list-models" in vqa and "-v VIDEO" in vqa
    assert "-o OPT, --opt OPT" in train and "looked up in the working directory, then VQA/" in " ".join(train.split())


@pytest.fixture
def bad_options(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(BAD_OPTIONS)
    return str(path)


def _one_line_yaml_error(err: str, path: str) -> None:
    lines = err.strip().splitlines()
    assert lines == [f"error: option file {path} is not valid YAML (line 3, column 1): expected ',' or '}}', but got "
                     "'<stream end>'"], err


def test_a_bad_option_file_is_one_line_and_exit_2_for_every_command(bad_options, monkeypatch, capsys):
    for name in COMMANDS:
        if name.startswith("sama-export-"):  # they need a checkpoint first (tests/test_onnx_*.py: their errors)
            continue
        flag = "--options" if name in SCORING_INPUT else "-o"
        assert call(name, [*SCORING_INPUT.get(name, []), flag, bad_options], monkeypatch) == 2, name
        _one_line_yaml_error(capsys.readouterr().err, bad_options)


def test_the_installed_executable_ends_a_bad_option_file_in_one_line(ran):
    """The executable itself: nothing but the one line on stderr (no traceback, no library noise), exit status 2."""
    assert ran.bad.returncode == 2 and ran.bad.stdout == ""
    _one_line_yaml_error(ran.bad.stderr, ran.bad_options)


def test_sama_iqa_scores_an_image_as_iqa_py(ran):
    command, script = ran.score, ran.script
    assert command.returncode == 0 and script.returncode == 0, command.stderr[-2000:] + script.stderr[-2000:]
    assert command.stdout == script.stdout and command.stdout.startswith(f"{ran.image}: score ")
    float(command.stdout.split("score ")[1].split(",")[0])  # a number
    assert command.stderr == script.stderr  # the same notes (checkpoint, sampling, calibration)
