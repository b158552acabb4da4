"""A disk that fills up (or a quota, an I/O error) while a scoring command writes its --output, or while an export
writes its graph: one ``error:`` line saying which file, why and how to go on, exit status 2, no traceback; every
complete row stays and --resume ends with the rows of one uninterrupted run. Simulated in-process by a file whose
writes fail with ENOSPC after a number of bytes, and for real in subprocesses with a file size limit (EFBIG)."""
import builtins
import csv
import errno
import os
import resource
import shlex
import subprocess
import sys

import pytest

from helpers import REPO
from samacore import scoring
from samaiqa import score
from test_iqa_score import small_checkpoint
from test_sigterm_workers import tiny_vqa
from test_scoring_output import image_job

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def vqa(tmp_path_factory):
    """24 tiny videos, an option file and a random-weight checkpoint in the examplar options' configuration."""
    return tiny_vqa(tmp_path_factory.mktemp("full_disk_vqa"), 24)


@pytest.fixture
def job(tmp_path):
    return image_job(tmp_path, 6)


class FullDisk:
    """A file on a disk with ``room`` bytes left: a write that does not fit writes what fits (a short write, as
    the system call) and the next one fails with ENOSPC; so does a flush or close with data still buffered."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), self.room)
        self.file.write(data[:n])
        self.room -= n
        return n

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def fill_disk_at(monkeypatch, path, room: int) -> None:
    """Make the scoring module's writes of ``path`` go to a :class:`FullDisk` with ``room`` bytes left."""
    def opened(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return FullDisk(f, room) if os.path.abspath(str(file)) == str(path) and "r" not in mode else f

    monkeypatch.setattr(scoring, "open", opened, raising=False)


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_full_disk_while_scoring_is_one_line_keeping_every_complete_row(job, monkeypatch, capsys):
    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    lines = whole.read_bytes().splitlines(keepends=True)  # header + 6 rows, each ending in \r\n
    out = tmp / "s.csv"
    capsys.readouterr()
    with monkeypatch.context() as m:
        fill_disk_at(m, out, len(b"".join(lines[:3])) + 10)  # the 3rd row does not fit: cut after 10 bytes
        assert score.main(args + ["--output", str(out)]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --output {out}: cannot write (No space left on device) after 2 rows; free "
                           "space, then continue with --resume: "), line
    assert line.endswith(" --resume") and f"--output {out}" in line.split("--resume: ")[1]
    assert out.read_bytes() == b"".join(lines[:3])  # header + 2 rows, the torn 3rd cut off again
    assert not os.path.exists(str(out) + ".lock")  # (unlocked)
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert "2 of 6 images are in" in capsys.readouterr().err
    assert out.read_text() == whole.read_text()  # every file once, same order, same scores


def test_a_full_disk_before_any_row_and_at_the_merge_is_one_line(job, monkeypatch, capsys):
    """The record written first (``<output>.meta.json``) and the merge of a --resume (a new CSV beside the old one)
    need room too: one line each, the rows as they were (the merge's temporary file removed)."""
    tmp, _, args = job
    out = tmp / "s.csv"
    with monkeypatch.context() as m:
        fill_disk_at(m, str(out) + ".meta.json", 0)
        assert score.main(args + ["--output", str(out)]) == 2
    assert f"cannot write {out}.meta.json (No space left on device) after 0 rows; free space" in one_error(capsys)
    with monkeypatch.context() as m:
        fill_disk_at(m, out, 200)
        assert score.main(args + ["--output", str(out)]) == 2
    capsys.readouterr()
    kept = out.read_bytes()
    assert kept.endswith(b"\r\n") and len(csv.reader(kept.decode().splitlines()).__next__()) == 5
    with monkeypatch.context() as m:
        fill_disk_at(m, str(out) + ".tmp", 30)
        assert score.main(args + ["--output", str(out), "--resume"]) == 2
    line, rows = one_error(capsys), len(kept.splitlines()) - 1
    assert f"--output {out}: cannot write (No space left on device) after {rows} rows; free space" in line
    assert out.read_bytes() == kept and not os.path.exists(str(out) + ".tmp")
    assert score.main(args + ["--output", str(out), "--resume"]) == 0


@pytest.mark.parametrize("complete", [2, 0])
def test_resume_scores_again_a_last_row_cut_short(job, capsys, complete):
    """A last row without its line end (written in part when the disk filled) may hold all its fields with the last
    one cut short: --resume scores that file again instead of keeping the cut value, and appends after a whole row
    (also when no row before it is complete)."""
    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    rows = list(csv.reader(open(whole, newline="")))
    out = tmp / "s.csv"
    os.replace(str(whole) + ".meta.json", str(out) + ".meta.json")
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(rows[:1 + complete])
        f.write(",".join(rows[1 + complete][:4] + ["resized fr"]))  # its note ("resized from ...") cut short
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert (f"{complete} of 6 images are in" in capsys.readouterr().err) == (complete > 0)
    assert out.read_text() == whole.read_text()


SCORE_UNDER_TORCHRUN = """import builtins, errno, os, sys
from samacore import scoring
from samaiqa import score
from test_full_disk_output import FullDisk

if os.environ.get("RANK") == "1":  # the disk fills while rank 1 writes its second row
    def opened(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return FullDisk(f, ROOM) if str(file).endswith(".part1") and "r" not in mode else f

    scoring.open = opened
sys.exit(score.main())
"""


def test_a_full_disk_under_torchrun_is_said_by_the_rank_and_resume_completes(job, capsys):
    from helpers import torchrun

    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    lines = whole.read_bytes().splitlines(keepends=True)
    room = len(lines[0]) + len(lines[2]) + 10  # the part's header and rank 1's first row (the 2nd file) fit
    (tmp / "launch.py").write_text(f"import sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\nROOM = {room}\n"
                                   + SCORE_UNDER_TORCHRUN)
    out = tmp / "two.csv"
    r = torchrun(tmp / "launch.py", args + ["--output", str(out), "--device", "cpu"], tmp, check=False, timeout=240)
    said = r.stdout + r.stderr
    ours = said.split("failed (exitcode: ")[0]  # (what follows is torchrun's own report of a failed process)
    assert r.returncode != 0 and "Traceback" not in ours and "Exception" not in ours, said[-3000:]
    assert (f"error: rank 1: --output {out}: cannot write {out}.part1 (No space left on device) after 1 row; free "
            "space, then continue with --resume: ") in said, said[-3000:]
    part = (tmp / "two.csv.part1").read_text().splitlines()
    assert len(part) == 2  # header + the row written before
    capsys.readouterr()
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert out.read_text() == whole.read_text() and not list(tmp.glob("two.csv.part*"))


# ----------------------------------------------------------------------------------------------- real write errors
def limited(limit: int, cmd, cwd) -> subprocess.CompletedProcess:
    """``cmd`` with no file of it allowed past ``limit`` bytes (RLIMIT_FSIZE: the write past it fails, EFBIG)."""
    def no_bigger() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(cmd, cwd=cwd, preexec_fn=no_bigger, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_vqa_scoring_stopped_by_a_real_write_error_goes_on_with_resume(vqa, tmp_path):
    listed = tmp_path / "videos.txt"
    listed.write_text("".join(path + "\n" for path in vqa.videos))
    cmd = [sys.executable, os.path.join(REPO, "VQA", "vqa.py"), "--list", str(listed), "--ckpt", vqa.ckpt,
           "--options", vqa.options, "--device", "cpu", "--num-workers", "0", "--no-progress", "--output"]
    whole, out = tmp_path / "whole.csv", tmp_path / "s.csv"
    assert subprocess.run(cmd + [str(whole)], cwd=REPO, capture_output=True).returncode == 0
    size = len(b"".join(whole.read_bytes().splitlines(keepends=True)[:17])) + 20  # room for 16 rows and a bit
    assert size > os.path.getsize(str(whole) + ".meta.json")
    r = limited(size, cmd + [str(out)], REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    said = [line for line in r.stderr.splitlines() if not line.startswith("note: ")]
    again = shlex.join([os.path.basename(sys.executable)] + cmd[1:] + [str(out), "--resume"])
    assert said == [f"error: --output {out}: cannot write (File too large) after 16 rows; continue with --resume "
                    f"once it can be written: {again}"]
    assert out.read_bytes() == b"".join(whole.read_bytes().splitlines(keepends=True)[:17])
    done = subprocess.run(cmd + [str(out), "--resume"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "16 of 24 videos are in" in done.stderr, done.stderr
    assert out.read_text() == whole.read_text()


def test_vqa_export_on_a_full_disk_is_one_line(vqa, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the graph exported before")
    assert os.path.getsize(vqa.ckpt) > 1 << 18  # (a graph of its weights does not fit)
    r = limited(1 << 18, [sys.executable, os.path.join(REPO, "VQA", "export_onnx.py"), "--ckpt", vqa.ckpt,
                          "--options", vqa.options, "--output", str(out)], REPO)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: --output {out}: cannot write (File too large); nothing was written: export again once it can be "
        "written"), r.stderr
    assert out.read_bytes() == b"the graph exported before" and os.listdir(tmp_path) == ["m.onnx"]


def test_iqa_export_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import onnx

    from samaiqa.export_onnx import main

    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    out = tmp_path / "m.onnx"

    def full(graph, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"part of a graph")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onnx, "save", full)
    assert main(["--ckpt", ckpt, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: --output {out}: cannot write (No space left on device); nothing was written: "
                           "free space, then export again"), err
    assert sorted(os.listdir(tmp_path)) == ["c.pth"]  # no graph, no part file
