"""The test commands (demo_test_iqa.py / demo_test.py) through the shared scoring path: predictions.csv written
row by row, scatter.png drawn (and a failing drawing costs nothing but a warning)."""
import csv

import pytest
import torch
from PIL import Image

from samacore import plots
from samaiqa import cli
from test_iqa_cli import base_options, make_images, write_options

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture
def test_options(tmp_path):
    info = make_images(str(tmp_path), 6)
    torch.manual_seed(0)
    opt = base_options(tmp_path, info, test_batch_size=2)
    torch.save({"state_dict": cli.build_model(opt).state_dict()}, tmp_path / "m.pth")
    opt.update(load_path=str(tmp_path / "m.pth"))
    return tmp_path, write_options(tmp_path / "t.yml", **opt)


def test_predictions_are_written_as_they_are_scored_and_drawn(test_options, monkeypatch):
    tmp, opt = test_options
    out, seen = tmp / "pred.csv", []
    real = cli.predict_fn

    def predict(model, batch, device):
        seen.append(len(list(csv.reader(open(out)))))  # the file as the batch starts
        return real(model, batch, device)

    monkeypatch.setattr(cli, "predict_fn", predict)
    summary = cli.test_main(["-o", opt, "--output", str(out), "--no-progress"])
    assert seen == [1, 3, 5]  # header, then 2 more rows after each batch of 2
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == [f"img{i:02d}.png" for i in range(6)] and summary["results"][0]["n"] == 6
    png = tmp / "run" / "test" / "scatter.png"
    with Image.open(png) as im:
        assert im.size[0] > 200 and im.size[1] > 200


def test_a_failing_drawing_warns_and_keeps_the_csv(test_options, monkeypatch, caplog):
    tmp, opt = test_options

    def broken(*args):
        raise RuntimeError("no canvas today")

    monkeypatch.setattr(plots, "_draw", broken)
    out = tmp / "pred.csv"
    with caplog.at_level("WARNING"):
        cli.test_main(["-o", opt, "--output", str(out), "--no-progress"])
    assert len(list(csv.DictReader(open(out)))) == 6
    assert not (tmp / "run" / "test" / "scatter.png").exists()
    assert "could not draw" in caplog.text and "no canvas today" in caplog.text


def test_scatter_pairs_leave_out_unscored_and_unlabelled_items():
    preds, labels = plots.scatter_pairs([(0.5, 1.0), (None, 2.0), (0.7, float("nan")), (0.9, 3.0)])
    assert preds.tolist() == [0.5, 0.9] and labels.tolist() == [1.0, 3.0]


def test_two_processes_write_the_rows_of_one(test_options):
    import os

    from helpers import REPO, torchrun

    tmp, opt = test_options
    cli.test_main(["-o", opt, "--output", str(tmp / "one.csv"), "--no-progress"])
    torchrun(os.path.join(REPO, "IQA", "demo_test_iqa.py"), ["-o", opt, "--output", str(tmp / "two.csv"),
                                                              "--device", "cpu", "--no-progress"], tmp)
    assert (tmp / "two.csv").read_text() == (tmp / "one.csv").read_text()


def test_vqa_test_command_streams_its_rows_and_draws(vqa_data, tmp_path):
    from helpers import vqa_train_options, write_yaml
    from samavqa import cli as vqa_cli
    from samavqa.recipe import build_model

    opt = vqa_train_options(vqa_data.root, "tiny-test", run_dir=str(tmp_path / "run"))
    torch.manual_seed(0)
    torch.save({"state_dict": build_model(opt, "cpu").state_dict()}, tmp_path / "m.pth")
    opt["load_path"] = str(tmp_path / "m.pth")
    out = tmp_path / "pred.csv"
    summary = vqa_cli.test_main(["-o", write_yaml(tmp_path / "t.yml", opt), "--output", str(out), "--no-progress"])
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["name", "pred", "gt", "error"] and len(rows) == vqa_data.n // 2
    assert summary["results"][0]["metrics"]["n"] == len(rows)
    assert (tmp_path / "run" / "test" / "scatter.png").stat().st_size > 1000


def test_an_existing_output_is_not_overwritten(test_options, vqa_data, tmp_path):
    """``demo_test*.py --output FILE`` replaced an existing CSV (e.g. a scorer's, whose ``.meta.json`` then lay beside
    the wrong rows); it is refused before any work, as the scorers refuse theirs. The command's own default file in
    its test run folder is still rewritten by a second test."""
    from helpers import vqa_train_options, write_yaml
    from samacore.options import OptionError
    from samavqa import cli as vqa_cli

    tmp, opt = test_options
    from samavqa.recipe import build_model

    vqa = vqa_train_options(vqa_data.root, "tiny-test", run_dir=str(tmp / "vqa-run"))
    torch.save({"state_dict": build_model(vqa, "cpu").state_dict()}, tmp / "v.pth")
    vqa["load_path"] = str(tmp / "v.pth")
    kept = tmp / "kept.csv"
    kept.write_text("name,score\na.png,0.5\n")
    for test_main, options in ((cli.test_main, opt), (vqa_cli.test_main, write_yaml(tmp / "v.yml", vqa))):
        with pytest.raises(OptionError, match=rf"^--output {kept} exists: a test command does not overwrite it; "
                                              rf"remove it or give another file$"):
            test_main(["-o", options, "--output", str(kept), "--no-progress"])
    assert kept.read_text() == "name,score\na.png,0.5\n"
    for _ in range(2):
        cli.test_main(["-o", opt, "--no-progress"])
    assert len(list(csv.DictReader(open(tmp / "run" / "test" / "predictions.csv")))) == 6


def test_a_full_disk_while_testing_is_one_line(test_options, monkeypatch, capsys):
    """The test commands write their predictions through the scorers' row writer: a full disk there is one line
    (exit status 2) keeping the complete rows, not a traceback ending in the writer's error."""
    from samacore import runs
    from test_full_disk_output import fill_disk_at

    tmp, opt = test_options
    out = tmp / "pred.csv"
    fill_disk_at(monkeypatch, out, 60)  # the header and a row or so
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        runs.run_command(lambda: cli.test_main(["-o", opt, "--output", str(out), "--no-progress"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == f"error: cannot write {out} (No space left on device)"
    assert out.read_bytes().endswith(b"\r\n")  # complete rows only
