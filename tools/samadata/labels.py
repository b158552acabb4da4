"""The label files of the examplar sets: their lines, their texts per split, writing them and checking them.

``examplar_vqa/{train,test,labels}.txt``: ``file,duration_s,fps,mos`` (the KoNViD-1k / LIVE-VQC layout);
``examplar_iqa/{labels,train,test}.txt``: ``name score``. The split of an item is its content's.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Sequence

from .contents import Item
from .sources import source_fps

SPLITS = ("train", "test")

#: how a label file's status is reported
LABEL_FILE_PROBLEMS = {"missing": "missing", "differs": "differs from the regenerated labels"}


def vqa_line(item: Item) -> str:
    """``file,duration_s,fps,mos`` -- the KoNViD-1k / LIVE-VQC layout (``fileid,_,_,label``)."""
    fps = source_fps(item.content.source)
    n = item.content.frames[1] - item.content.frames[0]
    return f"{item.filename},{n / float(fps):.3f},{float(fps):.3f},{item.label:.1f}"


def iqa_line(item: Item) -> str:
    """``name score`` -- the whitespace-separated txt layout the IQA trainer reads."""
    return f"{item.filename} {item.label:.1f}"


def _text(items: Sequence[Item], line: Callable[[Item], str], split: str = "") -> str:
    """The lines of the items (of one split, or all when ``split`` is empty), each ending in a newline."""
    return "".join(line(i) + "\n" for i in items if not split or i.content.split == split)


def label_texts(vqa: Sequence[Item], iqa: Sequence[Item]) -> Dict[str, str]:
    """Label files (path relative to the labels folder -> text) for the given items."""
    out: Dict[str, str] = {}
    if vqa:
        out.update({f"examplar_vqa/{split}.txt": _text(vqa, vqa_line, split) for split in SPLITS})
        out["examplar_vqa/labels.txt"] = _text(vqa, vqa_line)
    if iqa:
        out["examplar_iqa/labels.txt"] = _text(iqa, iqa_line)
        out.update({f"examplar_iqa/{split}.txt": _text(iqa, iqa_line, split) for split in SPLITS})
    return out


def write_labels(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> List[str]:
    """Write the label files of the given items under ``labels_dir``; returns their paths."""
    written = []
    for rel, text in label_texts(vqa, iqa).items():
        path = os.path.join(labels_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="\n") as f:
            f.write(text)
        written.append(path)
    return written


def label_file_status(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> Dict[str, str]:
    """Each label file's path -> ``"ok"``, ``"missing"`` or ``"differs"`` (from the regenerated labels)."""
    status = {}
    for rel, text in label_texts(vqa, iqa).items():
        path = os.path.join(labels_dir, rel)
        if not os.path.isfile(path):
            status[path] = "missing"
        else:
            with open(path) as f:
                status[path] = "ok" if f.read() == text else "differs"
    return status


def check_labels(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> List[str]:
    """Problems of the label files under ``labels_dir`` against the regenerated ones (empty: identical)."""
    return [f"{path}: {LABEL_FILE_PROBLEMS[s]}" for path, s in label_file_status(labels_dir, vqa, iqa).items()
            if s != "ok"]
