"""Label files as data: a format is a column spec, one reader serves them all, and each tree keeps a registry.

A label file lists items (a name, a quality label, optionally a group such as the reference image) one per line.
A format says where those are:

* :class:`TextColumns`: lines split into a fixed number of fields (by whitespace or a separator), the name and
  the label at given positions (``name score`` text files, FAST-VQA's ``fileid,_,_,label`` lists);
* :class:`CsvColumns`: a csv file whose header names the name, label and group columns (KonIQ-10k, KADID-10k);
* anything else implements the same small interface (``name``, ``extensions``, ``describe()``,
  ``accepts(path)``, ``read(path, prefix, allow_unlabelled)``), e.g. the image tree's pickle reader.

A :class:`LabelFormats` registry picks the format of a file by its extension (and, among csv formats, by its
header), so a new database's label file is one registered spec. Every reader checks every line and raises one
:class:`LabelError` listing all problems of the file, each with the file and the line (malformed lines, labels
that are not finite numbers, empty or duplicate names), so a broken file is fixed in one go; a file with one
problem gives one line.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .registry import Registry

__all__ = ["CsvColumns", "check_folder", "LabelError", "LabelFileNotFound", "LabelFormat", "LabelFormats", "LabelSet", "LabelSpec",
           "Problems", "TextColumns", "finish", "parse_label"]

MAX_LISTED = 20
LINE = "{path}, line {line}"  # where an item is, as messages say it (formats may say it otherwise)
DUPLICATE = "duplicate name {name!r} (first listed at {unit} {first})"
ALLOWED_LABEL = "a finite number, e.g. 3.5"


class LabelError(ValueError):
    """A label file that cannot be read: missing, malformed line, unknown layout."""


class LabelFileNotFound(LabelError, FileNotFoundError):
    """The label file does not exist."""


class Problems:
    """Collects the ``file, line N: ...`` messages of one label file; :meth:`raise_if_any` raises them together."""

    def __init__(self, path: str, location: str = LINE) -> None:
        self.path = path
        self.location = location
        self.items: List[str] = []

    def where(self, line: int) -> str:
        return self.location.format(path=self.path, line=line)

    def add(self, line: int, message: str) -> None:
        self.items.append(f"{self.where(line)}: {message}")

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
    """Names as written in the label file, full paths (``data_prefix`` joined), labels, optional groups.

    ``groups`` (one id per item, or None) keeps items of one group on the same side of a split (KADID-10k:
    the 81 reference images). ``labels`` is NaN for unlabelled items (test-only lists).
    """

    names: List[str]
    paths: List[str]
    labels: np.ndarray
    groups: Optional[List[str]] = None
    source: str = ""  # the label file
    lines: Optional[List[int]] = None  # line (pickle: item number) of each item in ``source``
    location: str = LINE  # how messages name an item's place (``{path}``, ``{line}``)

    def __len__(self) -> int:
        return len(self.names)

    def where(self, i: int) -> str:
        """``"labels.txt, line 7"`` for item ``i`` (as precise as the reader could tell)."""
        source = self.source or "label file"
        if self.lines is None:  # built by hand: only the position is known
            return f"{source}, item {i + 1}"
        return self.location.format(path=source, line=self.lines[i])

    def subset(self, index: Sequence[int]) -> "LabelSet":
        idx = [int(i) for i in index]
        return LabelSet(
            names=[self.names[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            source=self.source,
            lines=None if self.lines is None else [self.lines[i] for i in idx],
            location=self.location,
        )


def check_folder(folder: str, key: str, label_file: str) -> None:
    """Name a missing folder of the listed items (``key``, e.g. ``data.data_prefix``) as such, before its items
    would all be reported missing from ``label_file``."""
    if folder and not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise LabelError(f"{key}: folder {folder} {what} (the items of {label_file} are looked up there); give the "
                         "folder that holds them")


def parse_label(text: str, problems: Problems, line: int, what: str) -> Optional[float]:
    """``text`` as a finite float, or None after noting the problem (what is allowed included)."""
    if not text:
        problems.add(line, f"{what} is empty (allowed: {ALLOWED_LABEL})")
        return None
    try:
        value = float(text)
    except ValueError:
        problems.add(line, f"{what} {text!r} is not a number (allowed: {ALLOWED_LABEL})")
        return None
    if not math.isfinite(value):
        problems.add(line, f"{what} {text!r} is not a finite number (allowed: {ALLOWED_LABEL})")
        return None
    return value


@dataclass(frozen=True, kw_only=True)
class LabelSpec:
    """What all formats share: their registry name and how their messages and labels look (a base for specs and
    hand-written readers)."""

    name: str
    extensions: Tuple[str, ...] = ()  # lower-case, with the dot; () = any extension
    location: str = LINE
    unit: str = "line"  # what ``{first}`` of ``duplicate`` counts
    duplicate: str = DUPLICATE  # ``{name}``, ``{unit}``, ``{first}``
    empty: str = "{path}: no items"
    name_word: str = "name"
    label_word: str = "label"
    dtype: str = "float32"


def finish(spec: LabelSpec, problems: Problems, names: List[str], labels: List[float], lines: List[int], prefix: str,
           groups: Optional[List[str]] = None) -> LabelSet:
    """Check duplicates, raise every problem found, build the :class:`LabelSet` (paths = ``prefix``/name)."""
    first: Dict[str, int] = {}
    for name, line in zip(names, lines):
        if name in first:
            problems.add(line, spec.duplicate.format(name=name, unit=spec.unit, first=first[name]))
        else:
            first[name] = line
    problems.raise_if_any()
    if not names:
        raise LabelError(spec.empty.format(path=problems.path))
    return LabelSet(names=names, paths=[os.path.join(prefix, n) for n in names],
                    labels=np.asarray(labels, dtype=spec.dtype), groups=groups, source=problems.path, lines=lines,
                    location=spec.location)


class LabelFormat(Protocol):
    """What a registry needs of a format (the specs below, or a hand-written reader)."""

    name: str
    extensions: Tuple[str, ...]

    def describe(self) -> str: ...

    def accepts(self, path: str) -> bool: ...

    def read(self, path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet: ...


@dataclass(frozen=True, kw_only=True)
class TextColumns(LabelSpec):
    """One item per line, ``fields`` fields split by ``separator`` (None: whitespace); blank lines are skipped.

    ``expected`` says how a line looks (``"expected {expected}, got N"``); with ``expected_unlabelled`` a line may
    hold only the name (label NaN) when the file is read for scoring without ground truth.
    """

    fields: int
    expected: str
    separator: Optional[str] = None
    name_field: int = 0
    label_field: int = 1
    expected_unlabelled: Optional[str] = None

    def describe(self) -> str:
        return f"{'/'.join(self.extensions) or 'any file'} ({self.expected})"

    def accepts(self, path: str) -> bool:
        return True

    def read(self, path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
        names, labels, lines = [], [], []
        problems = Problems(path, self.location)
        unlabelled = allow_unlabelled and self.expected_unlabelled is not None
        with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.split() if self.separator is None else [x.strip() for x in line.strip().split(self.separator)]
                if len(fields) == self.fields:
                    value = parse_label(fields[self.label_field], problems, lineno, self.label_word)
                elif len(fields) == 1 and unlabelled:
                    value = math.nan
                else:
                    want = self.expected_unlabelled if unlabelled else self.expected
                    problems.add(lineno, f"expected {want}, got {len(fields)}: {line.strip()!r}")
                    continue
                name = fields[self.name_field]
                if not name:
                    problems.add(lineno, f"empty {self.name_word} in {line.strip()!r}")
                elif value is not None:
                    names.append(name)
                    labels.append(value)
                    lines.append(lineno)
        return finish(self, problems, names, labels, lines, prefix)


def read_header(path: str) -> List[str]:
    """The column names of a csv file (stripped)."""
    with open(path, "r", newline="", encoding="utf-8-sig", errors="replace") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


@dataclass(frozen=True, kw_only=True)
class CsvColumns(LabelSpec):
    """A csv file whose header names the item's ``name_column``, ``label_column`` and optional ``group_column``
    (other columns are ignored). ``title`` names the layout in messages (e.g. ``"KonIQ-10k"``)."""

    title: str
    name_column: str
    label_column: str
    group_column: Optional[str] = None
    extensions: Tuple[str, ...] = (".csv",)

    @property
    def columns(self) -> Tuple[str, ...]:
        return tuple(c for c in (self.name_column, self.group_column, self.label_column) if c)

    def describe(self) -> str:
        return f"{self.title} columns {', '.join(self.columns)}"

    def accepts(self, path: str) -> bool:
        header = read_header(path)
        return all(c in header for c in self.columns)

    def read(self, path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
        problems = Problems(path, self.location)
        with open(path, "r", newline="", encoding="utf-8-sig", errors="replace") as f:
            reader = csv.DictReader(io.StringIO(f.read()))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in self.columns if c not in header]
        if missing:
            raise LabelError(f"{path}: missing column(s) {', '.join(missing)}; the header has: {', '.join(header)}")
        names, labels, lines, groups = [], [], [], []
        for row in reader:
            n = reader.line_num
            if None in row or any(v is None for v in row.values()):  # the wrong number of columns
                got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                problems.add(n, f"expected {len(header)} columns ({', '.join(header)}), got {got}")
                continue
            row = {k.strip(): v.strip() for k, v in row.items()}
            value = parse_label(row[self.label_column], problems, n, self.label_column)
            if not row[self.name_column]:
                problems.add(n, f"empty {self.name_column}")
            elif value is not None:
                names.append(row[self.name_column])
                labels.append(value)
                lines.append(n)
                if self.group_column:
                    groups.append(row[self.group_column])
        return finish(self, problems, names, labels, lines, prefix, groups if self.group_column else None)


class LabelFormats:
    """A tree's label formats, in the order they are tried; :meth:`read` picks one by extension (and header).

    ``missing_hint`` is added to the message for a label file that does not exist (e.g. which option names it).
    """

    def __init__(self, missing_hint: str = "") -> None:
        self.formats: Registry[Any] = Registry("label format")
        self.missing_hint = missing_hint

    def register(self, fmt: Any) -> Any:
        """Add a format (a :class:`TextColumns` / :class:`CsvColumns` spec, or any :class:`LabelFormat`)."""
        return self.formats.register(fmt.name, fmt)

    def unregister(self, name: str) -> Any:
        return self.formats.unregister(name)

    def for_file(self, path: str) -> Any:
        """The format of ``path``: the first registered for its extension that accepts it (formats registered
        for any extension come after those naming it)."""
        ext = os.path.splitext(path)[1].lower()
        formats = [self.formats.get(n) for n in self.formats]
        candidates = [f for f in formats if ext in f.extensions] + [f for f in formats if not f.extensions]
        if not candidates:
            listed = ", ".join(f.describe() for f in formats)
            raise LabelError(f"{path}: unknown label file type {ext!r}; use {listed}")
        for fmt in candidates:
            if fmt.accepts(path):
                return fmt
        header = read_header(path)
        raise LabelError(f"{path}: unknown {ext.lstrip('.') or 'label file'} layout (header: "
                         f"{', '.join(header) or 'empty'}); expected {' or '.join(f.describe() for f in candidates)}")

    def read(self, path: str, prefix: str = "", allow_unlabelled: bool = False) -> LabelSet:
        """Read ``path`` with its format; paths are ``prefix``/name. ``allow_unlabelled``: lines may omit the label
        where the format allows it (lists to score)."""
        if not os.path.isfile(path):
            raise LabelFileNotFound(f"label file not found: {path}" + (f" {self.missing_hint}" if self.missing_hint else ""))
        return self.for_file(path).read(path, prefix, allow_unlabelled)
