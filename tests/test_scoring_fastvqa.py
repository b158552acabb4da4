"""FAST-VQA's [0, 1] score for its released models: sigmoid((raw - mean) / std) with the constants its vqa.py
publishes (mean_stds), in the CSV, the single-file line and the Python API."""
import csv
import math

import pytest

from samavqa import presets as P
from samavqa import score as S
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

# mean_stds of FAST-VQA's vqa.py (VQAssessment/FAST-VQA-and-FasterVQA)
PUBLISHED = {"FasterVQA": (0.14759505, 0.03613452), "FasterVQA-MS": (0.15218826, 0.03230298),
             "FasterVQA-MT": (0.14699507, 0.036453716), "FAST-VQA": (-0.110198185, 0.04178565),
             "FAST-VQA-M": (0.023889644, 0.030781006)}


def test_the_presets_carry_the_published_constants():
    assert {n: p.unit_mean_std for n, p in P.PRESETS.items() if p.unit_mean_std} == PUBLISHED
    assert P.PRESETS.get("SAMA").unit_mean_std is None


@pytest.fixture
def tiny_fastvqa(setup, tmp_path, monkeypatch):
    preset = P.register_preset(P.Preset("tiny-fast", str(setup / "tiny.yml"), "tiny-fast.pth", "https://example.org",
                                        "the tests", "a tiny model with FAST-VQA constants",
                                        unit_mean_std=(0.1, 0.05)))
    (tmp_path / "pretrained_weights").mkdir()
    (tmp_path / "pretrained_weights" / "tiny-fast.pth").write_bytes((setup / "tiny.pth").read_bytes())
    monkeypatch.chdir(tmp_path)
    yield preset
    P.PRESETS.unregister("tiny-fast")


def unit(raw):
    return 1 / (1 + math.exp(-(raw - 0.1) / 0.05))


def test_every_output_gives_the_fastvqa_score(setup, tiny_fastvqa, capsys):
    videos = [str(setup / "videos" / n) for n in ("v0.mp4", "v2.mp4")]
    assert S.main(["-v", *videos, "-m", "tiny-fast", "--output", "s.csv", "--no-progress"]) == 0
    rows = list(csv.DictReader(open("s.csv")))
    assert list(rows[0])[-1] == "fastvqa_score"
    for r in rows:
        assert float(r["fastvqa_score"]) == pytest.approx(unit(float(r["score"])), rel=1e-12)
    capsys.readouterr()
    assert S.main(["-v", videos[0], "-m", "tiny-fast"]) == 0
    line = capsys.readouterr().out.strip()
    assert f", FAST-VQA score {unit(float(rows[0]['score'])):.5f} (range [0,1])" in line
    scorer = S.load_scorer(model="tiny-fast")
    assert scorer(videos[0], fastvqa=True) == float(rows[0]["fastvqa_score"])
    # the same files by hand (--ckpt + --options) are recognised as the released model
    by_hand = S.load_scorer("pretrained_weights/tiny-fast.pth", str(setup / "tiny.yml"))
    assert by_hand.unit_scale == scorer.unit_scale


def test_other_models_have_no_fastvqa_score(setup):
    scorer = S.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"))
    with pytest.raises(ValueError, match="no FAST-VQA"):
        scorer(str(setup / "videos" / "v0.mp4"), fastvqa=True)
