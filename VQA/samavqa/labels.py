"""Label files of the video databases (beside :mod:`samaiqa.labels`): formats as column specs in a registry.

The format of the original FAST-VQA / SAMA lists (KoNViD-1k, LIVE-VQC, YouTube-UGC, LSVQ, the examplar set) is
one ``fileid,_,_,label`` line per video (comma separated, blank lines skipped); it is registered for every file
extension. A database with another layout is one more spec registered in :data:`LABEL_FORMATS` for its
extension (a csv with a header: :class:`samacore.labels.CsvColumns`), here or from a plugin file.

Problems are :class:`samacore.labels.LabelError` naming the file and line (``labels.txt:3: ...``), all of a file's
problems at once: a line with another number of fields, an empty file id, an empty label or one that is not a
finite number, a file id listed twice. The commands turn them into a one-line message and exit status 2.
"""
from __future__ import annotations

from typing import Any, Dict, List

from samacore.labels import LabelError, LabelFormats, LabelSet, TextColumns

__all__ = ["FAST_VQA", "LABEL_FORMATS", "LabelError", "read_label_file", "video_infos"]

#: the video label formats, in the order they are tried
LABEL_FORMATS = LabelFormats(missing_hint="(set `anno_file` to an existing 'fileid,_,_,label' file, or leave it "
                                          "out / null to score every video of data_prefix)")

FAST_VQA = LABEL_FORMATS.register(TextColumns(
    name="fast-vqa", fields=4, separator=",", name_field=0, label_field=3,
    expected="4 comma-separated fields 'fileid,_,_,label'", name_word="file id", location="{path}:{line}",
    duplicate="{name!r} is listed twice (first on line {first}); each video may have one label",
    empty="label file {path} lists no videos", dtype="float64"))


def video_infos(labels: LabelSet) -> List[Dict[str, Any]]:
    """The datasets' item list: ``[{"filename": path, "fileid": name, "label": float, "source": "file:line"}]``."""
    return [dict(filename=path, fileid=name, label=float(label), source=labels.where(i))
            for i, (name, path, label) in enumerate(zip(labels.names, labels.paths, labels.labels))]


def read_label_file(anno_file: str, data_prefix: str) -> List[Dict[str, Any]]:
    """The videos a label file lists (its format chosen by :data:`LABEL_FORMATS`), under ``data_prefix``, in file
    order; :class:`LabelError` (a ``ValueError``) naming file and line for malformed content, a
    ``FileNotFoundError`` (also a ``LabelError``) when the file is missing."""
    return video_infos(LABEL_FORMATS.read(anno_file, data_prefix))
