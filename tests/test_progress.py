"""Long silent phases say what they do: the examplar builder prints one counted line per media file, and the
calibration pass after training says what it scores and how many items."""
import pytest
import yaml

from helpers import GRID, SMALL_SWIN
from samacore import trainer
from samadata import examplar as E
from samaiqa import cli as iqa_cli


def test_examplar_build_prints_a_counted_line_per_file(tmp_path):
    content = E.IMAGE_CONTENTS[0].name  # one photo: a quick build
    names = [i.filename for i in E.image_items([content])]
    lines = []
    E.build(str(tmp_path / "data"), None, only=("iqa",), contents=[content], workers=1, log=lines.append)
    assert lines[0] == f"making {len(names)} media files from 1 contents in 1 worker process(es)"
    assert lines[1:-1] == [f"[{k}/{len(names)}] iqa/{name}" for k, name in enumerate(names, 1)]
    assert lines[-1].startswith(f"examplar data: 0 videos, {len(names)} images ({len(names)} media files written)")


def test_calibration_says_what_it_scores(iqa_images, tmp_path, monkeypatch):
    infos = []
    monkeypatch.setattr(trainer.log, "info", lambda msg, *a: infos.append(msg % a))
    opt = {"name": "cal", "stype": "sama", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "test_batch_size": 4, "test_num_workers": 0, "num_splits": 1, "progress": False,
           "data": {"database": "syn", "data_info": str(iqa_images), "data_prefix": str(iqa_images.parent), **GRID},
           "model": {"backbone_args": SMALL_SWIN}, "run_dir": str(tmp_path / "run")}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    iqa_cli.train_main(["-o", str(tmp_path / "o.yml")])
    ckpt = str(tmp_path / "run" / "cal_split00_syn_s_dev.pth")
    said = [line for line in infos if line.startswith("calibration: ")]
    assert said == [f"calibration: scoring the 8 training items once more in test mode with the selected model "
                    f"{ckpt}, so its scores can be mapped onto the label scale (label_stats)"]
    # ... before the pass, whose result follows
    assert infos.index(said[0]) < [k for k, line in enumerate(infos) if line.startswith("calibration stored")][0]
