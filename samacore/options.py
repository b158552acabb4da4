"""Loading and checking YAML option files.

Option files keep the original SAMA / FAST-VQA schema. Every problem is reported as an :class:`OptionError`
that names the key path, what is allowed and, for near misses, what was probably meant.
"""
from __future__ import annotations

import difflib
import os
from typing import Any, Iterable, Mapping, Sequence

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionError(ValueError):
    """A bad option: unknown key, missing key, wrong type or impossible value."""


def suggest(word: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_path(path: str, bases: Sequence[str] = ()) -> str:
    """Resolve ``path``: absolute as is; relative against the working directory, then each of ``bases``.

    Returns the first candidate that exists, else the working-directory candidate (so that a later open
    fails with the path the user wrote).
    """
    path = os.path.expanduser(str(path))
    if os.path.isabs(path):
        return path
    candidates = [os.path.abspath(path)] + [os.path.abspath(os.path.join(b, path)) for b in bases]
    for c in candidates:
        if os.path.exists(c):
            return c
    return candidates[0]


def load_options(path: str, search_dirs: Sequence[str] = ()) -> dict:
    """Read a YAML option file, looking for ``path`` in the working directory, then in ``search_dirs``."""
    resolved = resolve_path(path, search_dirs)
    if not os.path.isfile(resolved):
        where = ", ".join([os.getcwd()] + [os.path.abspath(d) for d in search_dirs])
        raise OptionError(f"option file {path!r} not found (looked in: {where})")
    with open(resolved, "r") as f:
        try:
            opt = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise OptionError(f"option file {resolved} is not valid YAML: {e}") from None
    if not isinstance(opt, dict):
        raise OptionError(f"option file {resolved} must hold a mapping of options, got {type(opt).__name__}")
    opt["_options_path"] = resolved
    return opt


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> None:
    """Reject keys of ``mapping`` not in ``allowed`` and report missing ``required`` keys."""
    allowed = list(allowed)
    if not isinstance(mapping, Mapping):
        raise OptionError(f"{where} must be a mapping, got {type(mapping).__name__}: {mapping!r}")
    for key in mapping:
        if key not in allowed and not str(key).startswith("_"):
            raise OptionError(
                f"unknown option {where}.{key}{suggest(key, allowed)}; allowed keys: {', '.join(sorted(allowed))}"
            )
    for key in required:
        if key not in mapping:
            raise OptionError(f"missing required option {where}.{key}")


def choice(value: Any, allowed: Iterable[Any], where: str) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the allowed values."""
    allowed = list(allowed)
    if value not in allowed:
        raise OptionError(
            f"{where} = {value!r} is not allowed{suggest(value, allowed)}; choose one of: {', '.join(map(str, allowed))}"
        )
    return value


def typed(mapping: Mapping[str, Any], key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    """``mapping[key]`` checked against ``kind`` (ints are accepted where floats are expected)."""
    if key not in mapping:
        if default is ...:
            raise OptionError(f"missing required option {where}.{key}")
        return default
    value = mapping[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise OptionError(f"{where}.{key} must be {names}, got {type(value).__name__}: {value!r}")
    return value
