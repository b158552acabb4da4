"""Making the examplar media: each content is loaded once in a worker process and its items written from it.

:func:`build` writes the media under ``<out>/vqa`` and ``<out>/iqa`` (files already there are kept unless
``force``) and the label files; a file appears only once complete, so a stopped build keeps what it finished.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from .contents import Content, Item, VideoContent, check_content_names, image_items, video_items
from .degrade import degrade_image, degrade_video
from .encode import write_image, write_mp4
from .labels import write_labels
from .sources import load_image_content, load_video_content, source_fps

DEFAULT_OUT = os.path.join("data", "examplar")
DEFAULT_LABELS = "examplar_data_labels"
PARTS = ("vqa", "iqa")

#: one worker's job: a content, its items still to make, and their folder
Task = Tuple[Content, List[Item], str]


@dataclass
class BuildReport:
    vqa_items: List[Item]
    iqa_items: List[Item]
    written: List[str]  # media files made in this run (existing ones are kept unless force)
    label_files: List[str]
    seconds: float

    def summary(self) -> str:
        return (
            f"examplar data: {len(self.vqa_items)} videos, {len(self.iqa_items)} images "
            f"({len(self.written)} media files written), {len(self.label_files)} label files, {self.seconds:.1f} s"
        )


def select_items(only: Sequence[str] = PARTS, contents: Optional[Iterable[str]] = None
                 ) -> Tuple[List[Item], List[Item]]:
    """(VQA items, IQA items) of the parts in ``only``, restricted to the named ``contents`` (None: all).

    Unknown parts or content names raise ``ValueError`` naming them and what is allowed.
    """
    bad = [o for o in only if o not in PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; choose from {', '.join(PARTS)}")
    if contents is not None:
        contents = list(contents)
        check_content_names(contents)
    return (video_items(contents) if "vqa" in only else [], image_items(contents) if "iqa" in only else [])


def _make_content(task: Task) -> List[str]:
    """Worker: load one content and write its items that are in ``task``; returns the written paths."""
    import cv2

    content, items, out_dir = task
    cv2.setNumThreads(1)  # one thread, as everywhere in the build
    written = []
    if isinstance(content, VideoContent):
        frames = load_video_content(content)
        for item in items:
            path = os.path.join(out_dir, item.filename)
            write_mp4(degrade_video(frames, item), path, source_fps(content.source))
            written.append(path)
    else:
        img = load_image_content(content)
        for item in items:
            path = os.path.join(out_dir, item.filename)
            write_image(degrade_image(img, item), path)
            written.append(path)
    return written


def _tasks(out_dir: str, vqa: Sequence[Item], iqa: Sequence[Item], force: bool) -> List[Task]:
    """One task per content with files to make, big video contents first (the workers then finish together)."""
    tasks = []
    for items, sub in ((vqa, "vqa"), (iqa, "iqa")):
        folder = os.path.join(out_dir, sub)
        for c in dict.fromkeys(i.content for i in items):  # contents in label order
            todo = [i for i in items if i.content == c and (force or not os.path.isfile(os.path.join(folder, i.filename)))]
            if todo:
                os.makedirs(folder, exist_ok=True)
                tasks.append((c, todo, folder))
    tasks.sort(key=lambda t: (not isinstance(t[0], VideoContent), -len(t[1])))
    return tasks


def _run_tasks(tasks: List[Task], out_dir: str, workers: int, log: Optional[Callable[[str], None]]) -> List[str]:
    """Make the tasks' files in ``workers`` processes; logs a line per file as its content's worker finishes."""
    import multiprocessing as mp

    written: List[str] = []
    if not tasks:
        return written
    total = sum(len(t[1]) for t in tasks)
    if log is not None:  # a silent minute otherwise
        log(f"making {total} media files from {len(tasks)} contents in {max(1, workers)} worker process(es)")
    # The media do not depend on which worker made them or what it made before (encode.X264_PARAMS), so the
    # contents are simply shared out. (spawn, not fork: codec / OpenCV thread pools do not survive a fork.)
    with mp.get_context("spawn").Pool(processes=max(1, workers)) as pool:
        for paths in pool.imap(_make_content, tasks, chunksize=1):
            written += paths
            for n, path in enumerate(paths, len(written) - len(paths) + 1):
                if log is not None:
                    log(f"[{n}/{total}] {os.path.relpath(path, out_dir)}")
    return written


def build(
    out_dir: str = DEFAULT_OUT,
    labels_dir: Optional[str] = DEFAULT_LABELS,
    only: Sequence[str] = PARTS,
    contents: Optional[Iterable[str]] = None,
    workers: int = 2,
    force: bool = False,
    log: Optional[Callable[[str], None]] = functools.partial(print, flush=True),
) -> BuildReport:
    """Make the examplar media under ``out_dir`` and (unless ``labels_dir`` is None) write the label files.

    ``only``: subset of ("vqa", "iqa"); ``contents``: restrict to these content names (for quick tests);
    existing media files are kept unless ``force``. ``log`` gets a line per written file (None: quiet).
    """
    t0 = time.time()
    vqa, iqa = select_items(only, contents)
    written = _run_tasks(_tasks(out_dir, vqa, iqa, force), out_dir, workers, log)
    label_files = write_labels(labels_dir, vqa, iqa) if labels_dir is not None else []
    report = BuildReport(vqa, iqa, written, label_files, time.time() - t0)
    if log is not None:
        log(report.summary())
    return report


def missing_media(out_dir: str = DEFAULT_OUT, only: Sequence[str] = PARTS) -> List[str]:
    """Labelled media files of the full examplar sets (the parts in ``only``) that are not under ``out_dir``."""
    vqa, iqa = select_items(only)
    need = [os.path.join(out_dir, "vqa", i.filename) for i in vqa]
    need += [os.path.join(out_dir, "iqa", i.filename) for i in iqa]
    return [p for p in need if not os.path.isfile(p)]
