"""Where scores go (samacore.scoring.OutputFile / run_scoring, through IQA/iqa.py with a tiny model): --output
checked before the model loads, no silent overwrite, one writer at a time, rows written as they come, clean
stops (Ctrl-C 130, SIGTERM 143) and --resume ending with the rows of one uninterrupted run."""
import csv
import fcntl
import json
import os
import re
import shutil
import signal

import pytest

from samaiqa import score
from test_iqa_score import make_images, small_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def image_job(tmp_path, n_images: int = 5):
    """``(tmp_path, checkpoint, iqa.py arguments)`` scoring a folder of ``n_images`` small images one at a time."""
    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    folder = tmp_path / "imgs"
    folder.mkdir()
    make_images(str(folder), n_images)
    return tmp_path, ckpt, ["--dir", str(folder), "--ckpt", ckpt, "--batch-size", "1", "--num-workers", "0",
                            "--no-progress"]


@pytest.fixture
def job(tmp_path):
    return image_job(tmp_path)


def no_model(monkeypatch):
    """Fail the test if the model is loaded (the checks must come first)."""
    monkeypatch.setattr(score, "load_scorer", lambda *a, **k: pytest.fail("the model was loaded"))


def one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def stop_at(monkeypatch, batch_number, stop):
    """Make the model's ``batch_number``-th batch call ``stop()`` (a Ctrl-C or a SIGTERM arriving mid-run)."""
    real, calls = score.ImageScorer.score_batch, []

    def score_batch(self, batch):
        calls.append(1)
        if len(calls) == batch_number:
            stop()
        return real(self, batch)

    monkeypatch.setattr(score.ImageScorer, "score_batch", score_batch)


def test_output_that_cannot_be_written_is_one_line_before_the_model(job, monkeypatch, capsys):
    tmp, _, args = job
    no_model(monkeypatch)
    assert score.main(args + ["--output", str(tmp)]) == 2
    assert f"--output {tmp} is a folder" in one_error(capsys)
    (tmp / "plain_file").write_text("x")
    assert score.main(args + ["--output", str(tmp / "plain_file" / "s.csv")]) == 2
    assert "cannot create its folder" in one_error(capsys)
    monkeypatch.setattr("samacore.scoring.tempfile.TemporaryFile", raise_permission)  # a read-only folder
    assert score.main(args + ["--output", str(tmp / "new.csv")]) == 2
    assert f"--output {tmp / 'new.csv'}: not writable ({tmp} is read-only" in one_error(capsys)


def raise_permission(*args, **kwargs):
    raise PermissionError(13, "Read-only file system")


def test_existing_output_is_refused_unless_resume_or_overwrite(job, monkeypatch, capsys):
    tmp, _, args = job
    out = tmp / "s.csv"
    out.write_text("precious\n")
    with monkeypatch.context() as m:
        no_model(m)
        assert score.main(args + ["--output", str(out)]) == 2
        assert "exists: pass --resume" in one_error(capsys) and out.read_text() == "precious\n"
        assert score.main(args + ["--output", str(out), "--resume", "--overwrite"]) == 2
        assert "exclude each other" in one_error(capsys)
        assert score.main(args + ["--resume"]) == 2
        assert "--resume needs --output" in one_error(capsys)
    assert score.main(args + ["--output", str(out), "--overwrite"]) == 0
    assert len(list(csv.DictReader(open(out)))) == 5


def test_a_second_writer_of_the_same_file_is_refused(job, monkeypatch, capsys):
    tmp, _, args = job
    out = tmp / "s.csv"
    with open(str(out) + ".lock", "a") as held:  # another command writing s.csv
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        no_model(monkeypatch)
        assert score.main(args + ["--output", str(out)]) == 2
        line = one_error(capsys)
    assert f"--output {out} is being written by another command" in line and not out.exists()


@pytest.mark.parametrize("how, status, said", [("ctrl-c", 130, "Ctrl-C"), ("sigterm", 143, "SIGTERM")])
def test_a_stop_keeps_the_rows_and_resume_ends_as_one_run(job, monkeypatch, capsys, how, status, said):
    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    out = tmp / "s.csv"

    def stop():
        if how == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)

    capsys.readouterr()
    with monkeypatch.context() as m:
        stop_at(m, 3, stop)
        assert score.main(args + ["--output", str(out)]) == status
    err = capsys.readouterr().err
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["name", "score", "calibrated", "error", "note"] and len(rows) == 3  # 2 finished rows kept
    assert f"stopped by {said}: 2 of 5 images scored" in err and "--resume" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert "2 of 5 images are in" in capsys.readouterr().err
    assert out.read_text() == whole.read_text()  # every file once, same order, same scores


def test_rows_reach_the_file_as_they_are_scored(job, monkeypatch):
    tmp, _, args = job
    out, seen = tmp / "s.csv", []
    stop_at(monkeypatch, 4, lambda: seen.append(len(list(csv.reader(open(out))))))
    assert score.main(args + ["--output", str(out)]) == 0
    assert seen == [4]  # header + 3 rows on disk while the 4th image is scored


def test_resume_with_another_model_or_options_is_refused(job, capsys):
    tmp, ckpt, args = job
    out = tmp / "s.csv"
    assert score.main(args + ["--output", str(out)]) == 0
    meta = json.load(open(str(out) + ".meta.json"))
    assert meta["checkpoint"] == ckpt and meta["stype"] == "sama" and meta["columns"][0] == "name"
    other, _ = small_checkpoint(tmp / "other.pth", seed=1)
    capsys.readouterr()
    assert score.main([a if a != ckpt else other for a in args] + ["--output", str(out), "--resume"]) == 2
    line = one_error(capsys)
    assert "--resume" in line and f"checkpoint {ckpt} (sha256 " in line and f"now {other} (sha256 " in line
    assert "checkpoint_size" not in line  # the digests say it
    assert score.main(args + ["--output", str(out), "--resume", "--stype", "fragment"]) == 2
    assert "stype 'sama', now 'fragment'" in one_error(capsys)


def stopped_run(job, monkeypatch, capsys):
    """``(out, whole)``: an output stopped by Ctrl-C after 2 of the 5 images, and the CSV of a whole run."""
    tmp, _, args = job
    whole, out = tmp / "whole.csv", tmp / "s.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    def ctrl_c():
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        stop_at(m, 3, ctrl_c)
        assert score.main(args + ["--output", str(out)]) == 130
    capsys.readouterr()
    return out, whole


def test_resume_goes_on_with_the_same_checkpoint_read_from_elsewhere(job, monkeypatch, capsys):
    """A copy of the checkpoint in another folder (another machine's path, a new modification time) is the same
    model: --resume goes on and says where it reads it now; the record compares the content's sha256."""
    tmp, ckpt, args = job
    out, whole = stopped_run(job, monkeypatch, capsys)
    meta = json.load(open(str(out) + ".meta.json"))
    assert meta["checkpoint"] == ckpt and len(meta["checkpoint_sha256"]) == 64
    (tmp / "elsewhere").mkdir()
    moved = shutil.copy(ckpt, tmp / "elsewhere" / "c.pth")
    os.utime(moved, (1, 1))
    assert score.main([a if a != ckpt else str(moved) for a in args] + ["--output", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"--resume: checkpoint now {moved} (was {ckpt})" in err and "2 of 5 images are in" in err
    assert out.read_text() == whole.read_text()


def test_resume_of_a_record_without_a_digest_compares_it_as_written(job, monkeypatch, capsys):
    """A record written before checkpoints were compared by content (no digest, no architecture): the same path,
    size and time go on, a copy elsewhere is refused (nothing says it is the same file)."""
    tmp, ckpt, args = job
    out, whole = stopped_run(job, monkeypatch, capsys)
    record = tmp / "s.csv.meta.json"
    meta = json.loads(record.read_text())
    del meta["checkpoint_sha256"], meta["architecture"]
    record.write_text(json.dumps(meta))
    moved = shutil.copy(ckpt, tmp / "c2.pth")
    assert score.main([a if a != ckpt else str(moved) for a in args] + ["--output", str(out), "--resume"]) == 2
    line = one_error(capsys)
    assert f"checkpoint {ckpt!r}, now {str(moved)!r}" in line and "checkpoint_mtime" in line
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert out.read_text() == whole.read_text()


def test_resume_folds_in_the_parts_a_stopped_torchrun_left(job, capsys):
    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    rows = list(csv.reader(open(whole)))
    out = tmp / "s.csv"
    os.replace(str(whole) + ".meta.json", str(out) + ".meta.json")
    for rank, kept in ((0, [rows[4]]), (1, [rows[2], rows[5][:2]])):  # the last row of part 1 was cut short
        with open(f"{out}.part{rank}", "w", newline="") as f:
            csv.writer(f).writerows([rows[0]] + kept)
    assert score.main(args + ["--output", str(out), "--resume"]) == 0
    assert "2 of 5 images are in" in capsys.readouterr().err
    assert out.read_text() == whole.read_text() and not list(tmp.glob("s.csv.part*"))


def test_torchrun_splits_the_files_and_merges_them_in_order(job):
    from helpers import REPO, torchrun

    tmp, _, args = job
    whole = tmp / "whole.csv"
    assert score.main(args + ["--output", str(whole)]) == 0
    out = tmp / "two.csv"
    r = torchrun(os.path.join(REPO, "IQA", "iqa.py"), args + ["--output", str(out), "--device", "cpu"], tmp)
    assert out.read_text() == whole.read_text() and not list(tmp.glob("two.csv.part*"))
    assert r.stderr.count("note: 5 of 5 images scored") == 1  # said once, by rank 0


def test_a_scoring_command_ends_without_the_interpreters_teardown(tmp_path):
    """``command_status``: in a caller's process (here: pytest) it returns the status; in the command's own process
    it ends it there with the status, after flushing, skipping the interpreter's teardown (atexit handlers too)."""
    import subprocess
    import sys

    from helpers import REPO
    from samacore.scoring import command_status, is_command_process

    assert not is_command_process(("vqa.py", "sama-vqa"))  # pytest runs this process: allocator kept, ...
    assert command_status(3, ("vqa.py", "sama-vqa")) == 3  # ... and the status is returned
    script = tmp_path / "vqa.py"
    script.write_text("import atexit, sys\nfrom samacore.scoring import command_status, is_command_process\n"
                      "atexit.register(print, 'teardown ran')\n"
                      "print('rows written', is_command_process(('vqa.py',)), end='')\n"
                      "sys.exit(command_status(3, ('vqa.py', 'sama-vqa')))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 3 and done.stdout == "rows written True"  # flushed (a pipe is block-buffered), no teardown


FAILING_RANK = """import os, sys
from samaiqa import score

scored = score.ImageScorer.score_batch


def score_batch(self, batch, *args, **kwargs):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("planned failure of rank 1")
    return scored(self, batch, *args, **kwargs)


score.ImageScorer.score_batch = score_batch
sys.exit(score.main())
"""


def test_a_rank_that_fails_while_scoring_ends_every_rank_with_the_reason(job):
    """Under torchrun each process scores its own files: one failing there ends the others within seconds, saying
    why (before, they waited in the closing collectives until the launcher stopped them, saying nothing); the
    failing one keeps its traceback and the rows already written stay in the parts."""
    import time

    from helpers import torchrun

    tmp, _, args = job
    (tmp / "launch.py").write_text(FAILING_RANK)
    out = tmp / "two.csv"
    tic = time.monotonic()
    r = torchrun(tmp / "launch.py", args + ["--output", str(out), "--device", "cpu"], tmp, check=False, timeout=240)
    elapsed = time.monotonic() - tic
    assert r.returncode != 0 and elapsed < 120, (r.returncode, elapsed)
    said = r.stdout + r.stderr
    own = [line for line in said.splitlines() if re.fullmatch(r"(\[rank1\]: )?RuntimeError: planned failure of rank 1",
                                                               line)]
    assert own and "Traceback (most recent call last)" in said  # the failing rank's own traceback, said before ...
    assert "error: rank 1 failed: RuntimeError: planned failure of rank 1" in said  # ... rank 0 says why it stops
    assert re.search(r"Root Cause \(first observed failure\):\n\[\d\]:\n.*\n.*\n +rank +: 1 ", said)  # torchrun's
    part = tmp / "two.csv.part0"
    assert part.exists() and part.read_text().startswith("name,score")  # rank 0's rows as they came


@pytest.mark.parametrize("flag, value, least", [("--batch-size", "0", 1), ("--batch-size", "-3", 1),
                                                ("--num-workers", "-1", 0), ("--batch-size", "two", 1)])
def test_batch_and_worker_counts_are_checked(flag, value, least, capsys):
    """``--batch-size 0`` / ``-3`` and ``--num-workers -1`` were taken as they came (and ran as 1 / 0)."""
    from samaiqa import score as iqa_score

    with pytest.raises(SystemExit) as e:
        iqa_score.main(["-i", "x.png", flag, value])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: argument {flag}: must be an integer >= {least}, got '{value}'")


def test_onnx_given_a_folder_says_so(tmp_path, capsys):
    from samaiqa import score as iqa_score

    assert iqa_score.main(["-i", "x.png", "--onnx", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"error: --onnx {tmp_path} is a folder: give the .onnx file "
                                                        "an export wrote")
