"""Checkpoint files as they really are: what the original training scripts write loads under weights-only
loading and scores exactly like the plain state dict; every file that cannot be used gets one line naming what
it is, and exit status 2 from the scripts.

The original scripts (SAMA's demo_train / demo_finetune / demo_train_iqa_baseline, FAST-VQA's new_train) save
``{"state_dict": ..., "validation_results": best_}`` where ``best_`` holds the numpy float64 values scipy
returns, so the pickle refers to numpy's scalar constructor and dtype classes. numpy 2.x pickles the constructor
as ``numpy._core.multiarray.scalar``, numpy 1.x as ``numpy.core.multiarray.scalar``.
"""
import argparse
import dataclasses
import pickletools
import zipfile

import numpy as np
import pytest
import torch
import yaml

from helpers import GRID, MODEL, SMALL_SWIN
from samacore.checkpoint import CheckpointError, build_with_weights, load_checkpoint, load_state_dict_checked
from samacore.runs import run_command
from samaiqa import cli as iqa_cli
from samaiqa import score as iqa_score
from samaiqa.model import IQAModel
from samavqa import cli as vqa_cli
from samavqa import score as vqa_score
from samavqa.models import DiViDeAddEvaluator, build_backbone, detect_format, load_vqa_weights

from conftest import write_video
from test_iqa_model import to_microsoft
from test_iqa_score import make_images
from test_vqa_model import seeded_weights_

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1, num_clips=2)
# what best_ holds after an epoch: (SRCC, PLCC, KRCC, RMSE) as numpy float64 (scipy.stats / numpy results)
BEST = (np.float64(0.8123), np.float64(0.8345), np.float64(0.6234), np.float64(0.3456))
NUMPY2_SCALAR = b"cnumpy._core.multiarray\nscalar\n"
NUMPY1_SCALAR = b"cnumpy.core.multiarray\nscalar\n"


def save_as_numpy1(obj, path) -> None:
    """``torch.save(obj)`` as a numpy 1.x process writes it, from this numpy 2.x process.

    torch.save writes a zip archive whose ``<archive>/data.pkl`` is a protocol-2 pickle; a numpy scalar appears
    there as the opcode GLOBAL (``c``) followed by ``module\\nname\\n`` in plain text. The pickles of both numpy
    versions differ only in that module name (the dtype is ``numpy dtype`` under both), so the file is saved
    normally, and ``data.pkl`` is rewritten with ``numpy.core.multiarray`` in place of
    ``numpy._core.multiarray``. Pickle opcodes hold no byte offsets, so the shorter text keeps the pickle valid;
    the zip is written anew (entries in order, stored) so that its sizes and checksums are right.
    """
    torch.save(obj, path)
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    rewritten = []
    for info, data in entries:
        if info.filename.endswith("/data.pkl"):
            assert NUMPY2_SCALAR in data
            data = data.replace(NUMPY2_SCALAR, NUMPY1_SCALAR)
        rewritten.append((info, data))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in rewritten:
            z.writestr(info, data)


def pickle_globals(path) -> set:
    """``module name`` of every GLOBAL opcode in a torch.save archive's data.pkl."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def original_files(folder, state_dict, tag):
    """``{"plain": ..., "numpy2": ..., "numpy1": ...}``: the plain state dict, and the original scripts' file
    written under numpy 2.x and under numpy 1.x (same weights)."""
    paths = {k: str(folder / f"{tag}-{k}.pth") for k in ("plain", "numpy2", "numpy1")}
    torch.save(state_dict, paths["plain"])
    torch.save({"state_dict": state_dict, "validation_results": BEST}, paths["numpy2"])
    save_as_numpy1({"state_dict": state_dict, "validation_results": BEST}, paths["numpy1"])
    assert "numpy._core.multiarray scalar" in pickle_globals(paths["numpy2"])
    names1 = pickle_globals(paths["numpy1"])
    assert "numpy.core.multiarray scalar" in names1 and not any("_core" in n for n in names1)
    return paths


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def assert_test_command_says(tree_cli, opt, tmp_path, capsys, path, message):
    """The tree's test command (``demo_test.py`` / ``demo_test_iqa.py``: ``run_command(cli.test_main)``) with
    options ``opt`` exits with status 2 and one line naming ``path`` and saying ``message``."""
    (tmp_path / "test.yml").write_text(yaml.safe_dump(opt))
    with pytest.raises(SystemExit) as e:
        run_command(lambda: tree_cli.test_main(["-o", str(tmp_path / "test.yml"), "--no-progress"]))
    line = one_error_line(capsys.readouterr().err)
    assert e.value.code == 2 and path in line and message in line


# ----------------------------------------------------------------------------------------------- VQA
@pytest.fixture(scope="module")
def vqa(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_ckpt")
    write_video(str(root / "a.mp4"), 3.0)
    model = seeded_weights_(DiViDeAddEvaluator(**MODEL["args"]), 4)
    opt = {"name": "tiny", "stype": "sama", "model": MODEL,
           "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": str(root),
                                                              "sample_types": {"fragments": FRAG}}}}}
    (root / "tiny.yml").write_text(yaml.safe_dump(opt))
    return root, model, original_files(root, model.state_dict(), "vqa")


def vqa_score_text(root, ckpt, capsys, *extra):
    rc = vqa_score.main(["-v", str(root / "a.mp4"), "--ckpt", ckpt, "--options", str(root / "tiny.yml"), *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out.strip()


def test_vqa_files_of_the_original_scripts_score_as_the_plain_state_dict(vqa, capsys):
    root, model, paths = vqa
    obj = load_checkpoint(paths["numpy1"])
    assert obj["validation_results"] == BEST and isinstance(obj["validation_results"][0], np.float64)
    assert detect_format(obj) == "vqa_release"
    plain = vqa_score_text(root, paths["plain"], capsys)
    assert plain.startswith(f"{root / 'a.mp4'}: score ")
    assert vqa_score_text(root, paths["numpy2"], capsys) == plain
    assert vqa_score_text(root, paths["numpy1"], capsys) == plain


def test_mmaction_k400_file_with_meta_loads_as_the_plain_backbone(vqa, tmp_path, capsys):
    """Video Swin's Kinetics-400 release is an mmcv checkpoint: ``meta`` (versions, time, config text, hook
    messages, whose best score is a numpy float) beside ``state_dict`` with ``backbone.*`` and ``cls_head.*``."""
    root, model, _ = vqa
    backbone = {k[len("fragments_backbone."):]: v for k, v in model.state_dict().items()
                if k.startswith("fragments_backbone.") and "fragment_position_bias_table" not in k}
    meta = {"mmcv_version": "1.3.1", "time": "Tue Jun 15 10:24:13 2021", "epoch": 30, "iter": 93630,
            "config": "model = dict(type='Recognizer3D', backbone=dict(type='SwinTransformer3D'))",
            "hook_msgs": {"best_score": np.float64(0.788), "last_ckpt": "work_dirs/epoch_30.pth"}}
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    state.update({"cls_head.fc_cls.weight": torch.randn(400, 192), "cls_head.fc_cls.bias": torch.zeros(400)})
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "k400.pth")
    save_as_numpy1({"meta": meta, "state_dict": state}, tmp_path / "k400-numpy1.pth")
    torch.save(backbone, tmp_path / "plain.pth")
    clip = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))
    outputs = []
    for name in ("plain.pth", "k400.pth", "k400-numpy1.pth"):
        target = seeded_weights_(DiViDeAddEvaluator(**MODEL["args"]), 9).eval()
        report = load_vqa_weights(target, str(tmp_path / name))
        assert not report.missing
        with torch.no_grad():
            outputs.append(target.fragments_backbone(clip))
    assert detect_format(load_checkpoint(str(tmp_path / "k400.pth"))) == "mmaction_k400"
    assert torch.equal(outputs[1], outputs[0]) and torch.equal(outputs[2], outputs[0])
    # it has no quality head, so it cannot score: said in one line
    rc = vqa_score.main(["-v", str(root / "a.mp4"), "--ckpt", str(tmp_path / "k400.pth"), "--options",
                         str(root / "tiny.yml")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and "backbone weights only (a Video Swin Kinetics-400 backbone (mmaction layout))" in line


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, vqa):
    """Files that are not usable checkpoints (for both trees)."""
    root, model, paths = vqa
    folder = tmp_path_factory.mktemp("bad_files")
    (folder / "notes.pth").write_text("SAMA weights: see the README\nhttps://drive.google.com/...\n")
    (folder / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    data = open(paths["numpy2"], "rb").read()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    iqa = IQAModel(img_size=64, **SMALL_SWIN)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in to_microsoft(iqa.backbone.state_dict(), iqa).items()}
                | {f"vqa_head.{k}": v for k, v in iqa.vqa_head.state_dict().items()}}, folder / "sama-iqa.pth")
    k400 = {f"backbone.{k}": v for k, v in build_backbone("swin_nano_grpb").state_dict().items()}
    # mmaction's file also holds its Kinetics classifier (it was taken for a SAMA model's '<branch>_head.*')
    k400 |= {"cls_head.fc_cls.weight": torch.zeros(400, 192), "cls_head.fc_cls.bias": torch.zeros(400)}
    torch.save({"state_dict": k400}, folder / "k400.pth")
    return folder


BAD = [("notes.pth", "is not a PyTorch checkpoint: it is a text file (it starts with 'SAMA weights: see the README')"),
       ("random.pth", "is not a PyTorch checkpoint: it is binary data starting with bytes"),
       ("truncated.pth", "is a truncated PyTorch checkpoint")]


@pytest.mark.parametrize("name, message", BAD + [("sama-iqa.pth", "is an IQA checkpoint (SAMA IQA: image Swin-V2 under "
                                                                  "'backbone.*' with the 'vqa_head.fc1/fc2' head)")])
def test_vqa_scripts_name_unusable_files_in_one_line(vqa, bad_files, tmp_path, capsys, name, message):
    root = vqa[0]
    path = str(bad_files / name)
    rc = vqa_score.main(["-v", str(root / "a.mp4"), "--ckpt", path, "--options", str(root / "tiny.yml")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and path in line and message in line
    # demo_test.py: the same line, exit status 2
    opt = yaml.safe_load(open(root / "tiny.yml")) | {"load_path": path, "run_dir": str(tmp_path / "run")}
    assert_test_command_says(vqa_cli, opt, tmp_path, capsys, path, message)


def test_other_objects_are_refused_by_name_unless_trusted(vqa, tmp_path, capsys):
    """A pickled object that is not a tensor, container or numpy scalar (here the argparse namespace some
    scripts store) is refused naming it; --trust-checkpoint / trust_checkpoint: true unpickle it fully."""
    root, model, paths = vqa
    path = str(tmp_path / "with-args.pth")
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    rc = vqa_score.main(["-v", str(root / "a.mp4"), "--ckpt", path, "--options", str(root / "tiny.yml")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and path in line and "refused argparse.Namespace" in line
    assert "trust_checkpoint: true" in line and "--trust-checkpoint" in line
    plain = vqa_score_text(root, paths["plain"], capsys)
    assert vqa_score_text(root, path, capsys, "--trust-checkpoint") == plain
    # the option of the train / finetune / test commands, and their flag
    opt = yaml.safe_load(open(root / "tiny.yml")) | {"load_path": path, "run_dir": str(tmp_path / "run")}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(opt))
    with pytest.raises(CheckpointError, match="refused argparse.Namespace"):
        vqa_cli.test_main(["-o", str(tmp_path / "test.yml"), "--no-progress"])
    for k, (argv, trusted) in enumerate(((["--trust-checkpoint"], opt), ([], opt | {"trust_checkpoint": True}))):
        (tmp_path / "test.yml").write_text(yaml.safe_dump(trusted))
        got = vqa_cli.test_main(["-o", str(tmp_path / "test.yml"), "--no-progress", "--output",
                                 str(tmp_path / f"p{k}.csv"), *argv])
        assert got["checkpoint"] == path
        pred = float(open(tmp_path / f"p{k}.csv").read().splitlines()[1].split(",")[1])
        assert f"score {pred:.6f}" in plain  # demo_test.py's pred is vqa.py's score


# ----------------------------------------------------------------------------------------------- IQA
@pytest.fixture(scope="module")
def iqa(tmp_path_factory):
    """SAMA IQA's file (Microsoft's layout under ``backbone.``, ``vqa_head.fc1/fc2``, validation_results) and the
    plain state dict of the same small model."""
    root = tmp_path_factory.mktemp("iqa_ckpt")
    make_images(str(root), 2)
    torch.manual_seed(5)
    model = IQAModel(img_size=64, **SMALL_SWIN)
    with torch.no_grad():  # Swin-V2 starts its post-norm weights at zero: make every tensor count
        for p in model.parameters():
            p.normal_(0, 0.2)
    sama = {f"backbone.{k}": v for k, v in to_microsoft(model.backbone.state_dict(), model).items()}
    sama |= {f"vqa_head.{k}": v for k, v in model.vqa_head.state_dict().items()}
    paths = original_files(root, sama, "sama-iqa")
    torch.save(model.state_dict(), paths["plain"])  # the plain state dict in our (timm) layout
    (root / "o.yml").write_text(yaml.safe_dump({"stype": "sama", "data": dict(GRID),
                                                "model": {"backbone_args": SMALL_SWIN}}))
    return root, paths


def iqa_score_text(root, ckpt, capsys):
    rc = iqa_score.main(["-i", str(root / "im0.png"), "--ckpt", ckpt, "--options", str(root / "o.yml")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out.strip()


def test_iqa_files_of_the_original_script_score_as_the_plain_state_dict(iqa, capsys):
    root, paths = iqa
    plain = iqa_score_text(root, paths["plain"], capsys)
    assert plain.startswith(f"{root / 'im0.png'}: score ")
    assert iqa_score_text(root, paths["numpy2"], capsys) == plain
    assert iqa_score_text(root, paths["numpy1"], capsys) == plain


@pytest.mark.parametrize("name, message", BAD + [
    ("k400.pth", "it is a VQA checkpoint (a Video Swin Kinetics-400 backbone (mmaction layout)), not an IQA model"),
    ("vqa", "it is a VQA checkpoint (a SAMA / FAST-VQA video model")])
def test_iqa_scripts_name_unusable_files_in_one_line(iqa, vqa, bad_files, tmp_path, capsys, name, message):
    root = iqa[0]
    path = vqa[2]["numpy1"] if name == "vqa" else str(bad_files / name)
    rc = iqa_score.main(["-i", str(root / "im0.png"), "--ckpt", path, "--options", str(root / "o.yml")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and path in line and message in line
    # demo_test_iqa.py: the same line, exit status 2
    opt = {"name": "t", "stype": "sama", "load_path": path, "run_dir": str(tmp_path / "run"), "progress": False,
           "data": {"data_info": str(root / "info.txt"), "data_prefix": str(root), **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    (root / "info.txt").write_text("im0.png 1.0\nim1.png 2.0\n")
    assert_test_command_says(iqa_cli, opt, tmp_path, capsys, path, message)


# ----------------------------------------------------------------------------------------------- the loader
def test_pre_1_6_format_with_numpy_values_loads(tmp_path):
    """Files of PyTorch < 1.6 (no zip archive) load the same way, numpy values included."""
    path = str(tmp_path / "old.pth")
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "validation_results": BEST}, path,
               _use_new_zipfile_serialization=False)
    obj = load_checkpoint(path)
    assert obj["validation_results"] == BEST and torch.equal(obj["state_dict"]["w"], torch.arange(3.0))
    data = open(path, "rb").read()
    for cut in range(len(data) // 4, len(data), 9):  # in the pickle and in the tensor data after it
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"cut\.pth is a (truncated|damaged) PyTorch checkpoint \(pre-1\.6 "
                                                  r"format; .*\): download or copy it again$"):
            load_checkpoint(str(tmp_path / "cut.pth"))


@pytest.mark.parametrize("content, says", [
    (b"", "an empty file"),
    (b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>", "an HTML page (a failed download?)"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 123\n", "a Git LFS pointer, not the weights"),
    (b"\x1f\x8b\x08\x00" + bytes(60), "a gzip file")])
def test_what_a_download_gone_wrong_is(tmp_path, content, says):
    (tmp_path / "w.pth").write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(tmp_path / "w.pth"))
    assert str(e.value).startswith(f"{tmp_path / 'w.pth'} is not a PyTorch checkpoint: it is {says}")


def test_ctrl_c_while_a_checkpoint_is_written_ends_after_the_file_is_in_place(tmp_path, monkeypatch):
    # SIGINT inside torch.save used to surface as the zip writer's RuntimeError (a traceback, status 1); held, the
    # file is finished and renamed first, then the KeyboardInterrupt comes
    import signal

    from samacore import checkpoint as ck

    real_save = torch.save

    def interrupted_save(obj, f):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the write starts
        real_save(obj, f)

    monkeypatch.setattr(ck.torch, "save", interrupted_save)
    path = tmp_path / "last.pth"
    # Python's own Ctrl-C handler, as in a terminal (a suite run in the background has SIGINT ignored)
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ck.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}}, str(path))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, outside)
    monkeypatch.undo()
    assert torch.equal(ck.load_checkpoint(str(path))["state_dict"]["w"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left


# ----------------------------------------------------------------------------------------------- build_with_weights
class _Tiny(torch.nn.Module):
    """A linear layer with a computed (persistent) buffer: what build_with_weights must keep or rebuild."""

    def __init__(self, needs_values: bool = False):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.register_buffer("index", torch.arange(3, device="cpu"))
        if needs_values:
            self.scale = float(torch.ones(1).sum())  # construction that reads a value: impossible on meta


def _load_into(state):
    return lambda model: load_state_dict_checked(model, state, what="tiny")


def test_build_with_weights_gives_the_files_tensors_without_random_draws():
    torch.manual_seed(0)
    state = _Tiny().state_dict()
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # a half-precision file
    rng = torch.get_rng_state()
    model, report = build_with_weights(_Tiny, _load_into(state), "cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # no random initialisation ran
    assert report.loaded == 3 and not report.missing
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert model.fc.weight.dtype == torch.float32 and torch.equal(model.fc.weight, state["fc.weight"].float())
    assert torch.equal(model.index, torch.arange(3))


def test_build_with_weights_builds_as_usual_where_meta_cannot_work():
    torch.manual_seed(0)
    full = _Tiny().state_dict()
    # a file without the buffer leaves it without a value on meta: the usual build keeps its computed value
    without_buffer = {k: v for k, v in full.items() if k != "index"}
    model, report = build_with_weights(_Tiny, _load_into(without_buffer), "cpu")
    assert report.missing == ["index"] and torch.equal(model.index, torch.arange(3))
    assert torch.equal(model.fc.weight, full["fc.weight"])
    # construction that reads values: built as usual, weights loaded
    model, _ = build_with_weights(lambda: _Tiny(needs_values=True), _load_into(full), "cpu")
    assert model.scale == 1.0 and torch.equal(model.fc.bias, full["fc.bias"])
    # a load that checks values (torch.equal has no meta kernel): built as usual
    def checking_load(model):
        assert torch.equal(model.fc.bias, model.fc.bias)
        return load_state_dict_checked(model, full, what="tiny")

    model, _ = build_with_weights(_Tiny, checking_load, "cpu")
    assert torch.equal(model.fc.weight, full["fc.weight"])
    # a file that does not fit is the loader's error, as with a usual build
    with pytest.raises(CheckpointError, match="wrong shape"):
        build_with_weights(_Tiny, _load_into({**full, "fc.weight": torch.zeros(2, 4)}), "cpu")


def test_vqa_scorer_loads_without_random_draws_and_scores_as_a_usual_build(vqa):
    root, model, paths = vqa
    torch.manual_seed(0)
    rng = torch.get_rng_state()
    scorer = vqa_score.load_scorer(paths["numpy2"], str(root / "tiny.yml"), device="cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # built on the meta device: no random initialisation
    mine, theirs = scorer.model.state_dict(), model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not any(m.training for m in scorer.model.modules())
    usual = dataclasses.replace(scorer, model=model.eval())
    assert scorer(str(root / "a.mp4")) == usual(str(root / "a.mp4"))


def test_iqa_scorer_loads_without_random_draws_and_scores_as_a_usual_build(iqa):
    """timm's Swin-V2 computes its coordinate tables and masks (buffers no file holds): on the meta device they
    are computed once the file's tensors are in (init_non_persistent_buffers). SAMA's own files (Microsoft's
    layout) are checked against those tables while they are converted, so they are built as usual."""
    root, paths = iqa
    image = str(root / "im0.png")
    for name in ("plain", "numpy2"):  # our layout; SAMA's file (Microsoft's layout, converted)
        torch.manual_seed(0)
        rng = torch.get_rng_state()
        scorer = iqa_score.load_scorer(paths[name], str(root / "o.yml"), device="cpu")
        assert torch.equal(torch.get_rng_state(), rng) == (name == "plain"), name
        usual = IQAModel(img_size=64, **SMALL_SWIN)
        iqa_score.load_into_model(usual, paths[name])
        mine, theirs = dict(scorer.model.named_buffers()), dict(usual.named_buffers())
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        mine, theirs = scorer.model.state_dict(), usual.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert scorer(image) == dataclasses.replace(scorer, model=usual.eval())(image)


def test_ctrl_c_while_the_resume_state_is_written_names_that_state(tmp_path, monkeypatch):
    """The Ctrl-C message names the epoch whose state was being written when Ctrl-C came: the hold lasts until the
    run context has noted it (before, the KeyboardInterrupt left save_checkpoint first and the message said that
    no state was saved, with the file in place)."""
    import signal

    from samacore import checkpoint as ck
    from samacore.context import RunContext, interrupted_message
    from samacore.resume import TrainState

    model = torch.nn.Linear(2, 1)
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1))
    ctx = RunContext(state_path=str(tmp_path / "run" / "last.pth"))
    monkeypatch.setattr(RunContext, "current", ctx)
    real_save = torch.save

    def interrupted_save(obj, f):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the write starts
        real_save(obj, f)

    monkeypatch.setattr(ck.torch, "save", interrupted_save)
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt):
            state.save(ctx.state_path, 2, on_saved=lambda: ctx.state_saved(2))
    finally:
        signal.signal(signal.SIGINT, outside)
    assert (tmp_path / "run" / "last.pth").is_file()
    assert interrupted_message("sama-train-vqa").startswith("interrupted (Ctrl-C): the state after epoch 2 is saved")
