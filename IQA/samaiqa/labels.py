"""Label files of the IQA databases, and the train/test split protocol over them.

The formats (:data:`LABEL_FORMATS`, tried in this order; a file's extension, then a csv's header, picks one):

* ``txt``: ``name score`` text, whitespace separated (SPAQ, LIVE Challenge, the bundled examplar set);
* ``kadid``: KADID-10k csv ``dist_img,ref_img,dmos,var`` (the reference image becomes the split group);
* ``koniq``: KonIQ-10k csv with the columns ``image_name`` and ``MOS_zscore``;
* ``pkl``: pickle ``{"files": [...], "labels": [...]}``, read with a restricted unpickler (plain containers,
  numbers, strings and numpy arrays only), so a label file cannot run code.

The text and csv formats are column specs read by :mod:`samacore.labels`; a new database's label file is one
more spec registered here (or from a plugin file: ``LABEL_FORMATS.register(...)``). Problems are reported with
the label file and the line (1-based; for pickles the item number): malformed lines (wrong number of fields /
columns), labels that are not finite numbers (text, NaN, inf), and duplicate names (an image listed twice would
land on both sides of a split). A reader collects every problem of a file and raises one :class:`LabelError`
listing them (at most ``samacore.labels.MAX_LISTED``), so a broken file is fixed in one go. Listed images that
are not on disk are found by :func:`missing_files` (same ``file, line N`` form); the trainer logs them and skips
them as bad items, the scorer reports them per row.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from samacore.labels import (
    CsvColumns, LabelError, LabelFormats, LabelSet, LabelSpec, Problems, TextColumns, finish, parse_label,
)

#: the IQA label formats, in the order they are tried
LABEL_FORMATS = LabelFormats()

TXT = LABEL_FORMATS.register(TextColumns(
    name="txt", extensions=(".txt",), fields=2, expected="'name score' (2 fields)", label_word="score",
    expected_unlabelled="'name score' or 'name' (2 fields)"))
KADID = LABEL_FORMATS.register(CsvColumns(
    name="kadid", title="KADID-10k", name_column="dist_img", label_column="dmos", group_column="ref_img"))
KONIQ = LABEL_FORMATS.register(CsvColumns(
    name="koniq", title="KonIQ-10k", name_column="image_name", label_column="MOS_zscore"))


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays / scalars only."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a label file")


@dataclass(frozen=True, kw_only=True)
class PickleLabels(LabelSpec):
    """Pickle holding ``{"files": [names], "labels": [scores]}``; problems are named by item number."""

    extensions: Tuple[str, ...] = (".pkl",)
    location: str = "{path}, item {line}"
    unit: str = "item"

    def describe(self) -> str:
        return ".pkl ({'files': [...], 'labels': [...]})"

    def accepts(self, path: str) -> bool:
        return True

    def read(self, path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
        try:
            with open(path, "rb") as f:
                d = _SafeUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
            raise LabelError(f"{path}: cannot read the pickle: {e}") from None
        if not isinstance(d, dict) or "files" not in d or "labels" not in d:
            raise LabelError(f"{path}: expected a dict with 'files' and 'labels', got {type(d).__name__}")
        names = [str(x) for x in d["files"]]
        raw = list(np.asarray(d["labels"]).reshape(-1))
        if len(raw) != len(names):
            raise LabelError(f"{path}: {len(names)} files but {len(raw)} labels")
        problems = Problems(path, self.location)
        kept_names, labels, items = [], [], []
        for i, (name, v) in enumerate(zip(names, raw)):
            value = parse_label(str(v), problems, i + 1, "label")
            if value is not None:
                kept_names.append(name)
                labels.append(value)
                items.append(i + 1)
        return finish(self, problems, kept_names, labels, items, prefix)


PKL = LABEL_FORMATS.register(PickleLabels(name="pkl"))

read_txt = TXT.read
read_pkl = PKL.read
read_info = LABEL_FORMATS.read  # any registered format, chosen by extension (and csv header)


def missing_files(labels: LabelSet) -> List[Tuple[int, str]]:
    """Items whose image is not a file on disk: ``[(index, "labels.txt, line 7: image 'a.png' not found (PATH)")]``."""
    out = []
    for i, (name, path) in enumerate(zip(labels.names, labels.paths)):
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "not found"
            out.append((i, f"{labels.where(i)}: image {name!r} {what} ({path})"))
    return out


# --------------------------------------------------------------------------------------------- split protocol
_KADID_NAME = re.compile(r"^(I\d+)_")
KADID_REFERENCES = 81


def kadid_groups(labels: LabelSet) -> List[str]:
    """Reference-image group of each KADID-10k item: from the csv's ``ref_img``, else from names ``I01_...``,
    else by position (the original assumes 125 consecutive distortions per reference, in file order)."""
    if labels.groups is not None:
        return list(labels.groups)
    bases = [_KADID_NAME.match(os.path.basename(n)) for n in labels.names]
    if all(bases):
        return [m.group(1) for m in bases]  # type: ignore[union-attr]
    n = len(labels)
    if n % KADID_REFERENCES == 0:
        per_ref = n // KADID_REFERENCES
        return [f"ref{i // per_ref:02d}" for i in range(n)]
    raise LabelError(
        "KADID-10k split needs the reference image of every item: use the database's dmos.csv (ref_img column), "
        f"names like I01_01_01.png, or {KADID_REFERENCES} equal consecutive blocks; got {n} items"
    )


def fixed_split(labels: LabelSet, test: LabelSet) -> List[Tuple[List[int], List[int]]]:
    """One given train/test split (e.g. an official one): the items of ``labels`` named in ``test`` are the test
    side, all others train. Returns ``[(train_idx, test_idx)]``, each sorted; raises :class:`LabelError` when
    ``test`` names an item ``labels`` does not have, or leaves nothing to train on."""
    index = {name: i for i, name in enumerate(labels.names)}
    unknown = [(i, name) for i, name in enumerate(test.names) if name not in index]
    if unknown:
        i, name = unknown[0]
        raise LabelError(f"{test.where(i)}: {name!r} is not in {labels.source or 'the label file'} "
                         f"({len(unknown)} of {len(test)} test items are not); the test list must name items of "
                         "data.data_info")
    test_idx = sorted({index[name] for name in test.names})
    chosen = set(test_idx)
    train_idx = [i for i in range(len(labels)) if i not in chosen]
    if not train_idx:
        raise LabelError(f"{test.source or 'the test list'} names every item of {labels.source or 'the label file'}: "
                         "nothing is left to train on")
    return [(train_idx, test_idx)]


__all__ = [
    "LabelError",
    "LabelSet",
    "fixed_split",
    "kadid_groups",
    "missing_files",
    "LABEL_FORMATS",
    "read_info",
    "read_pkl",
    "read_txt",
]
