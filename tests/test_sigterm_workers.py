"""Stopping a scoring command that reads with DataLoader worker processes, as a shell or a job scheduler does it: a
signal to the whole process group reaches the workers too. SIGTERM ends with the one ``stopped by SIGTERM`` line
(exit status 143) and Ctrl-C with the one ``stopped by Ctrl-C`` line (130) -- no worker's death reported, no
traceback -- and no worker is left behind; after a ``kill -9`` of the command, the orphaned workers do not hold the
output's lock, so ``--resume`` goes on at once (VQA/vqa.py with 2 workers on tiny synthetic videos, a random-weight
model in the examplar options' configuration: the shallow Video Swin on 2x2 fragments of 32, 8-frame clips)."""
import csv
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from helpers import FRAG, REPO, write_yaml

N_VIDEOS = 40
# The examplar options' model (VQA/options/examplar-SAMA-test.yml): the shallow Video Swin, no pretrained weights.
SHALLOW = {"type": "DiViDeAddEvaluator",
           "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                    "backbone_size": "swin_shallow_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                    "vqa_head": {"in_channels": 96, "hidden_channels": 64, "dropout_ratio": 0.0}}}


def tiny_vqa(folder, n_videos: int) -> SimpleNamespace:
    """In ``folder``: ``n_videos`` small videos ``videos/v{i}.mp4`` (64x80, 20 frames), an option file ``tiny.yml``
    sampling them as the examplar options do (SAMA, 2x2 fragments of 32, one 8-frame clip) and a random-weight
    checkpoint ``tiny.pth`` of its model; returns ``videos`` (their paths, in order), ``options`` and ``ckpt``."""
    import torch

    from conftest import write_video
    from samavqa.models import DiViDeAddEvaluator

    os.makedirs(folder / "videos")
    videos = [str(folder / "videos" / f"v{i:02d}.mp4") for i in range(n_videos)]
    for i, path in enumerate(videos):
        write_video(path, 1 + i % 9)
    options = write_yaml(folder / "tiny.yml", {
        "name": "tiny", "stype": "sama", "test_batch_size": 1, "test_num_workers": 1, "model": SHALLOW,
        "data": {"val": {"type": "FusionDataset", "args": {
            "phase": "test", "data_prefix": str(folder / "videos"),
            "sample_types": {"fragments": dict(FRAG, frame_interval=2, num_clips=1)}}}}})
    torch.manual_seed(0)
    torch.save({"state_dict": DiViDeAddEvaluator(**SHALLOW["args"]).state_dict()}, folder / "tiny.pth")
    return SimpleNamespace(videos=videos, options=options, ckpt=str(folder / "tiny.pth"))


@pytest.fixture(scope="module")
def vqa(tmp_path_factory):
    return tiny_vqa(tmp_path_factory.mktemp("sigterm_vqa"), N_VIDEOS)


@pytest.fixture
def videos(vqa, tmp_path):
    listed = tmp_path / "videos.txt"
    listed.write_text("".join(path + "\n" for path in vqa.videos))
    return listed


def command(vqa, listed, out):
    return [sys.executable, os.path.join(REPO, "VQA", "vqa.py"), "--list", str(listed), "--ckpt", vqa.ckpt,
            "--options", vqa.options, "--device", "cpu", "--num-workers", "2", "--no-progress", "--output", str(out)]


def started(cmd) -> subprocess.Popen:
    """``cmd`` in a process group of its own (as a shell starts a job)."""
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            # a background job of a shell ignores SIGINT, and so would the command (no Ctrl-C)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_rows(out, rows: int, job: subprocess.Popen) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end and job.poll() is None:
        if os.path.exists(out) and len(list(csv.reader(open(out, newline="")))) > rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {rows} rows in {out}: {job.poll()}")


def group(pgid: int):
    """The processes of process group ``pgid`` still there (zombies too: not yet reaped is still there)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(int(pid))
    return found


def gone(pgid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while group(pgid) and time.monotonic() < end:
        time.sleep(0.05)
    left = group(pgid)
    if left:
        os.killpg(pgid, signal.SIGKILL)  # (the test's own processes: none left behind whatever it finds)
    return not left


def test_a_stop_sent_to_the_process_group_is_one_line_and_leaves_no_worker(vqa, videos, tmp_path):
    """Several tries, the signal arriving at different moments (before: 'DataLoader worker (pid N) is killed by
    signal: Terminated' with its traceback in most of them)."""
    for attempt, (sig, status, said) in enumerate([(signal.SIGTERM, 143, "SIGTERM")] * 4
                                                  + [(signal.SIGINT, 130, "Ctrl-C")] * 2):
        out = tmp_path / f"s{attempt}.csv"
        job = started(command(vqa, videos, out))
        wait_for_rows(out, 2 + attempt % 3, job)
        os.killpg(job.pid, sig)
        _, err = job.communicate(timeout=120)
        lines = [line for line in err.splitlines() if not line.startswith("note: ")]
        assert job.returncode == status and len(lines) == 1, (attempt, job.returncode, err)
        assert lines[0].startswith(f"stopped by {said}: ") and f"of {N_VIDEOS} videos scored" in lines[0], err
        assert gone(job.pid), f"worker processes left behind after {said}"
        rows = list(csv.reader(open(out, newline="")))
        assert rows[0][0] == "name" and all(len(r) == 5 for r in rows) and len(rows) > 2


SLOW_LOADING = """import os, sys, time
sys.path[:0] = [REPO]
from torch.utils.data import Dataset
from samacore.scoring import OutputFile, score_items


class Slow(Dataset):  # a long video being decoded when the command is killed
    def __len__(self):
        return 4

    def __getitem__(self, i):
        open(MARK, "w").close()
        time.sleep(120)
        return {"x": i}


output = OutputFile(OUT)
output.check()
output.lock()
for row in score_items(Slow(), (RuntimeError,), lambda batch: [0.0] * len(batch["index"]), str, num_workers=1):
    pass
"""


def test_after_a_kill_9_orphaned_workers_do_not_hold_the_output_lock(tmp_path):
    """``kill -9`` of a scoring command leaves its loader workers running until they notice (a worker decoding a
    long video: until it is done); they must not hold ``<output>.lock`` (before: --resume was refused as "being
    written by another command" meanwhile)."""
    from samacore.scoring import OutputError, OutputFile

    out, mark = tmp_path / "s.csv", tmp_path / "loading"
    script = tmp_path / "slow.py"
    script.write_text(f"REPO, OUT, MARK = {REPO!r}, {str(out)!r}, {str(mark)!r}\n" + SLOW_LOADING)
    said = open(tmp_path / "stderr.txt", "w+")  # (not a pipe: the orphan would keep it open)
    job = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=said, stderr=said, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not mark.exists() and job.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        assert mark.exists(), (tmp_path / "stderr.txt").read_text()
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
        orphans = group(job.pid)
        assert orphans  # the worker, still loading
        again = OutputFile(str(out), resume=True)
        try:
            again.lock()  # what --resume does first
        except OutputError as e:
            pytest.fail(f"{e} (held by the orphaned worker {orphans})")
        again.unlock()
    finally:
        gone(job.pid, within=0)
        said.close()
