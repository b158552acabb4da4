"""Shared test fixtures: tiny synthetic videos with labels and a K400-style init file for the tiny VQA backbone."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch  # (also: torch before decord / cv2 video I/O)

from helpers import FRAG, MODEL, N_VIDEOS, write_graded_images



@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (and do not fight other test processes for cores); torchrun tests
    also need it to match their processes (OMP_NUM_THREADS=1): same kernels, same numbers."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_video(path, quality, frames=20, h=64, w=80):
    """Blockier (lower `quality`) videos get a lower label, so there is something to learn."""
    import cv2

    rng = np.random.default_rng(int(quality * 10))
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    block = max(1, int(16 / quality))
    for _ in range(frames):
        small = rng.integers(0, 255, size=(h // block + 1, w // block + 1, 3), dtype=np.uint8)
        out.write(np.ascontiguousarray(np.kron(small, np.ones((block, block, 1), np.uint8))[:h, :w]))
    out.release()


def label_of(i):
    return 10.0 + 5 * (1 + 2 * i)


@pytest.fixture(scope="session")
def vqa_data(tmp_path_factory):
    """``root`` with ``videos/v{i}.mp4`` (i < N_VIDEOS), ``labels.txt`` (all), ``val.txt`` (even i) and
    ``k400_nano.pth`` (an mmaction-style backbone file for ``swin_nano_grpb``); plus FRAG, MODEL, N_VIDEOS."""
    from samavqa.models import build_backbone

    root = tmp_path_factory.mktemp("vqa_data")
    os.makedirs(root / "videos")
    lines = []
    for i in range(N_VIDEOS):
        write_video(str(root / "videos" / f"v{i}.mp4"), 1 + i * 2)
        lines.append(f"v{i}.mp4,-1,-1,{label_of(i)}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("\n".join(lines[::2]) + "\n")
    torch.manual_seed(1)
    bb = build_backbone("swin_nano_grpb").state_dict()
    state = {f"backbone.{k}": v for k, v in bb.items() if "fragment_position_bias_table" not in k}
    state["cls_head.fc_cls.weight"] = torch.zeros(400, 192)
    torch.save({"state_dict": state}, root / "k400_nano.pth")
    return SimpleNamespace(root=root, frag=FRAG, model=MODEL, n=N_VIDEOS)


@pytest.fixture(scope="session")
def iqa_images(tmp_path_factory):
    """10 small images ``im{i}.png`` whose label is their brightness; returns the label file ``info.txt``."""
    folder = tmp_path_factory.mktemp("iqa_images")
    write_graded_images(folder, [f"im{i}.png" for i in range(10)], [20 + 20 * i for i in range(10)],
                        [(40 + 2 * i, 56) for i in range(10)], label_digits=2)
    return folder / "info.txt"
