"""Label files of the IQA databases, and the train/test split protocol over them.

Readers (all return a :class:`LabelSet`):

* ``name score`` text, whitespace separated (SPAQ, LIVE Challenge, the bundled examplar set);
* KonIQ-10k csv with the columns ``image_name`` and ``MOS_zscore``;
* KADID-10k csv ``dist_img,ref_img,dmos,var`` (the reference image becomes the split group);
* pickle ``{"files": [...], "labels": [...]}``, read with a restricted unpickler (plain containers, numbers,
  strings and numpy arrays only), so a label file cannot run code.

Problems are reported with the label file and the line (1-based; for pickles the item number): malformed lines
(wrong number of fields / columns), labels that are not finite numbers (text, NaN, inf), and duplicate names
(an image listed twice would land on both sides of a split). A reader collects every problem of a file and
raises one :class:`LabelError` listing them (at most :data:`MAX_LISTED`), so a broken file is fixed in one go.
Listed images that are not on disk are found by :func:`missing_files` (same ``file, line N`` form); the
trainer logs them and skips them as bad items, the scorer reports them per row.
"""
from __future__ import annotations

import csv
import io
import math
import os
import pickle
import random
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np


MAX_LISTED = 20


class LabelError(ValueError):
    """A label file that cannot be read: missing, malformed line, unknown layout."""


class _Problems:
    """Collects ``file, line N: ...`` messages of one label file; :meth:`raise_if_any` raises them together."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: List[str] = []

    def add(self, lineno: int, message: str, unit: str = "line") -> None:
        self.items.append(f"{self.path}, {unit} {lineno}: {message}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise LabelError(self.items[0])
        shown = self.items[:MAX_LISTED]
        more = f"\n  ... and {len(self.items) - len(shown)} more" if len(self.items) > len(shown) else ""
        raise LabelError(f"{len(self.items)} problems in {self.path}:\n  " + "\n  ".join(shown) + more)


@dataclass
class LabelSet:
    """Names as written in the label file, full paths (``data_prefix`` joined), float labels, optional groups.

    ``groups`` (one id per item, or None) keeps items of one group on the same side of a split (KADID-10k:
    the 81 reference images). ``labels`` is NaN for unlabelled items (test-only lists).
    """

    names: List[str]
    paths: List[str]
    labels: np.ndarray
    groups: Optional[List[str]] = None
    source: str = ""  # the label file
    lines: Optional[List[int]] = None  # line (pickle: item number) of each item in ``source``

    def __len__(self) -> int:
        return len(self.names)

    def where(self, i: int) -> str:
        """``"labels.txt, line 7"`` for item ``i`` (as precise as the reader could tell)."""
        source = self.source or "label file"
        if self.lines is None:  # built by hand: only the position is known
            return f"{source}, item {i + 1}"
        unit = "item" if source.lower().endswith(".pkl") else "line"
        return f"{source}, {unit} {self.lines[i]}"

    def subset(self, index: Sequence[int]) -> "LabelSet":
        idx = [int(i) for i in index]
        return LabelSet(
            names=[self.names[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            source=self.source,
            lines=None if self.lines is None else [self.lines[i] for i in idx],
        )


def _float(text: str, problems: _Problems, lineno: int, what: str, unit: str = "line") -> Optional[float]:
    """``text`` as a finite float, or None after noting the problem."""
    try:
        value = float(text)
    except ValueError:
        problems.add(lineno, f"{what} {text!r} is not a number", unit)
        return None
    if not math.isfinite(value):
        problems.add(lineno, f"{what} {text!r} is not a finite number", unit)
        return None
    return value


def _finish(names: List[str], labels: List[float], prefix: str, problems: _Problems, lines: List[int],
            groups=None, unit: str = "line") -> LabelSet:
    """Check duplicates, raise every problem found, build the :class:`LabelSet`."""
    first: dict = {}
    for name, lineno in zip(names, lines):
        if name in first:
            problems.add(lineno, f"duplicate name {name!r} (first listed at {unit} {first[name]})", unit)
        else:
            first[name] = lineno
    problems.raise_if_any()
    path = problems.path
    if not names:
        raise LabelError(f"{path}: no items")
    return LabelSet(
        names=names,
        paths=[os.path.join(prefix, n) for n in names],
        labels=np.asarray(labels, dtype=np.float32),
        groups=groups,
        source=path,
        lines=lines,
    )


def missing_files(labels: LabelSet) -> List[Tuple[int, str]]:
    """Items whose image is not a file on disk: ``[(index, "labels.txt, line 7: image 'a.png' not found (PATH)")]``."""
    out = []
    for i, (name, path) in enumerate(zip(labels.names, labels.paths)):
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "not found"
            out.append((i, f"{labels.where(i)}: image {name!r} {what} ({path})"))
    return out


def read_txt(path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
    """``name score`` per line (whitespace separated; blank lines skipped). With ``allow_unlabelled`` a line
    may hold only a name (label NaN), for scoring images without ground truth."""
    names, labels, lines = [], [], []
    problems = _Problems(path)
    with open(path, "r", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 2:
                value = _float(fields[1], problems, lineno, "score")
            elif len(fields) == 1 and allow_unlabelled:
                value = math.nan
            else:
                want = "'name score' or 'name'" if allow_unlabelled else "'name score'"
                problems.add(lineno, f"expected {want} (2 fields), got {len(fields)}: {line.strip()!r}")
                continue
            if value is not None:
                names.append(fields[0])
                labels.append(value)
                lines.append(lineno)
    return _finish(names, labels, prefix, problems, lines)


def _read_csv_rows(path: str, problems: _Problems) -> Tuple[List[str], List[Tuple[int, dict]]]:
    """Header and ``(line, row)`` pairs; rows with the wrong number of columns are noted and left out."""
    with open(path, "r", newline="", errors="replace") as f:
        text = f.read()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            problems.add(reader.line_num, f"expected {len(header)} columns ({', '.join(header)}), got {n}")
            continue
        rows.append((reader.line_num, {k.strip(): v.strip() for k, v in row.items()}))
    return header, rows


KONIQ_COLUMNS = ("image_name", "MOS_zscore")
KADID_COLUMNS = ("dist_img", "ref_img", "dmos")


def read_koniq_csv(path: str, prefix: str = "") -> LabelSet:
    """KonIQ-10k scores csv: columns ``image_name`` and ``MOS_zscore`` (other columns ignored)."""
    problems = _Problems(path)
    header, rows = _read_csv_rows(path, problems)
    _need(header, KONIQ_COLUMNS, path)
    names, labels, lines = [], [], []
    for n, r in rows:
        value = _float(r["MOS_zscore"], problems, n, "MOS_zscore")
        if value is not None:
            names.append(r["image_name"])
            labels.append(value)
            lines.append(n)
    return _finish(names, labels, prefix, problems, lines)


def read_kadid_csv(path: str, prefix: str = "") -> LabelSet:
    """KADID-10k ``dmos.csv``: ``dist_img,ref_img,dmos,var``; items are grouped by ``ref_img``."""
    problems = _Problems(path)
    header, rows = _read_csv_rows(path, problems)
    _need(header, KADID_COLUMNS, path)
    names, labels, lines, groups = [], [], [], []
    for n, r in rows:
        value = _float(r["dmos"], problems, n, "dmos")
        if value is not None:
            names.append(r["dist_img"])
            labels.append(value)
            lines.append(n)
            groups.append(r["ref_img"])
    return _finish(names, labels, prefix, problems, lines, groups)


def _need(header: Sequence[str], columns: Sequence[str], path: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise LabelError(f"{path}: missing column(s) {', '.join(missing)}; the header has: {', '.join(header)}")


def read_csv(path: str, prefix: str = "") -> LabelSet:
    """A csv label file: KonIQ-10k or KADID-10k layout, told apart by the header."""
    with open(path, "r", newline="") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    if all(c in header for c in KADID_COLUMNS):
        return read_kadid_csv(path, prefix)
    if all(c in header for c in KONIQ_COLUMNS):
        return read_koniq_csv(path, prefix)
    raise LabelError(
        f"{path}: unknown csv layout (header: {', '.join(header) or 'empty'}); expected KonIQ-10k columns "
        f"{', '.join(KONIQ_COLUMNS)} or KADID-10k columns {', '.join(KADID_COLUMNS)}"
    )


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


def read_pkl(path: str, prefix: str = "") -> LabelSet:
    """Pickle holding ``{"files": [names], "labels": [scores]}``."""
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
    problems = _Problems(path)
    kept_names, labels, items = [], [], []
    for i, (name, v) in enumerate(zip(names, raw)):
        value = _float(str(v), problems, i + 1, "label", unit="item")
        if value is not None:
            kept_names.append(name)
            labels.append(value)
            items.append(i + 1)
    return _finish(kept_names, labels, prefix, problems, items, unit="item")


def read_info(path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
    """Read a label file by its extension: ``.txt``, ``.csv`` (KonIQ / KADID) or ``.pkl``."""
    if not os.path.isfile(path):
        raise LabelError(f"label file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".txt":
        return read_txt(path, prefix, allow_unlabelled)
    if ext == ".csv":
        return read_csv(path, prefix)
    if ext == ".pkl":
        return read_pkl(path, prefix)
    raise LabelError(f"{path}: unknown label file type {ext!r}; use .txt (name score), .csv (KonIQ / KADID) or .pkl")


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


def make_splits(
    n: int, num_splits: int, groups: Optional[Sequence[str]] = None, train_ratio: float = 0.8
) -> List[Tuple[List[int], List[int]]]:
    """The SAMA IQA protocol: split ``s`` shuffles with ``random.Random(s * 123)`` and trains on the first 80%.

    Without ``groups`` the item indices are shuffled and cut at ``int(0.8 * n)``. With ``groups`` (KADID-10k)
    the distinct groups (in order of first appearance) are shuffled, the first ``int(0.2 * G)`` go to the test
    side, and every item follows its group. Returns ``[(train_idx, test_idx)]``, each sorted.
    """
    out = []
    test_ratio = round(1.0 - train_ratio, 12)
    if groups is None:
        for s in range(num_splits):
            order = list(range(n))
            random.Random(s * 123).shuffle(order)
            cut = int(train_ratio * n)
            out.append((sorted(order[:cut]), sorted(order[cut:])))
        return out
    if len(groups) != n:
        raise ValueError(f"make_splits: {len(groups)} group ids for {n} items")
    uniq = list(dict.fromkeys(groups))
    gid = {g: i for i, g in enumerate(uniq)}
    item_group = [gid[g] for g in groups]
    for s in range(num_splits):
        order = list(range(len(uniq)))
        random.Random(s * 123).shuffle(order)
        test_groups = set(order[: int(test_ratio * len(uniq))])
        train = [i for i in range(n) if item_group[i] not in test_groups]
        test = [i for i in range(n) if item_group[i] in test_groups]
        out.append((train, test))
    return out


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
    "make_splits",
    "missing_files",
    "read_csv",
    "read_info",
    "read_kadid_csv",
    "read_koniq_csv",
    "read_pkl",
    "read_txt",
]
