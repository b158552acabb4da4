"""Loading and checking YAML option files.

Option files keep the original SAMA / FAST-VQA schema. Every problem is reported as an :class:`OptionError`
that names the key path, what is allowed and, for near misses, what was probably meant.
"""
from __future__ import annotations

import difflib
import hashlib
import re
import importlib
import importlib.util
import os
import sys
import traceback
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionError(ValueError):
    """A bad option: unknown key, missing key, wrong type or impossible value."""


def suggest(word: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refused_value(value: Any) -> str:
    """A refused option value as a message shows it; a string says it is one (``'4'`` quoted in YAML is text, not
    the number 4)."""
    if not isinstance(value, str):
        return repr(value)
    try:
        float(value)
    except ValueError:
        return f"the string {value!r}"
    return f"the string {value!r} (quoted in the YAML file: write {value.strip()} without quotes for a number)"


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


def option_file_dirs(tree_dir: str) -> List[str]:
    """Where a tree's commands look for an option file after the working directory: the tree's folder (``-o
    options/x.yml`` from the repository root), its ``options/`` folder (``-o x.yml``) and the repository root
    (``-o IQA/options/x.yml`` from inside ``IQA/``, or from anywhere with a path relative to the repository)."""
    return [tree_dir, os.path.join(tree_dir, "options"), REPO_ROOT]


def option_file_help(tree: str) -> str:
    """The ``-o`` / ``--options`` help of a tree's commands (``tree``: ``VQA`` or ``IQA``): the lookup order of
    :func:`option_file_dirs`."""
    return f"option file (looked up in the working directory, then {tree}/, {tree}/options/ and the repository root)"


def load_options(path: str, search_dirs: Sequence[str] = (), overrides: Optional[Mapping[str, Any]] = None,
                 sets: Sequence[str] = ()) -> dict:
    """Read a YAML option file, looking for ``path`` in the working directory, then in ``search_dirs``.

    ``overrides`` (``{key or a.b.key: value}``, the command line's flags) and then ``sets`` (``--set
    KEY.PATH=VALUE`` items, :func:`apply_sets`) replace values before anything is checked, so they are checked as
    if the file held them.
    """
    resolved = resolve_path(path, search_dirs)
    if os.path.isdir(resolved):
        raise OptionError(f"option file {path!r} is a folder ({resolved}): give a YAML file")
    if not os.path.isfile(resolved):
        if os.path.isabs(os.path.expanduser(str(path))):
            raise OptionError(f"option file {path!r} not found")
        where = ", ".join([os.getcwd()] + [os.path.abspath(d) for d in search_dirs])
        raise OptionError(f"option file {path!r} not found (looked in: {where})")
    opt = _read_yaml(resolved)
    for key, value in (overrides or {}).items():
        set_option(opt, key, value)
    apply_sets(opt, sets)
    opt["_options_path"] = resolved
    return opt


def _read_yaml(resolved: str) -> dict:
    with open(resolved, "r", encoding="utf-8-sig") as f:  # -sig: a file saved with a BOM reads the same
        try:
            opt = yaml.safe_load(f)
        except UnicodeDecodeError as e:
            raise OptionError(f"option file {resolved} is not a UTF-8 text file ({e.reason} at byte {e.start}): "
                              "give a YAML file") from None
        except yaml.YAMLError as e:  # PyYAML's message spans lines: the problem and where, in one line
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = " ".join(str(getattr(e, "problem", None) or e).split())
            raise OptionError(f"option file {resolved} is not valid YAML{where}: {problem}") from None
        except (ValueError, RecursionError) as e:  # values PyYAML cannot build (a date 2020-13-45), or nesting too deep
            raise OptionError(f"option file {resolved} holds a value that cannot be read: {e}") from None
    if not isinstance(opt, dict):
        raise OptionError(f"option file {resolved} must hold a mapping of options, got {type(opt).__name__}")
    return opt


# YAML 1.1 (PyYAML) reads 3e-4 as a string; on the command line it is meant as a number
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_set(item: str) -> Tuple[str, Any]:
    """``"a.b.c=VALUE"`` -> ``("a.b.c", value)``, the value read as YAML (numbers, true/false, null, lists)."""
    key, sep, text = str(item).partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise OptionError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set optimizer.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):  # not YAML, or a value PyYAML cannot build: the text itself
        value = text
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)
    return key, value


def set_option(opt: dict, dotted: str, value: Any) -> None:
    """``opt[a][b][c] = value`` for ``dotted`` ``"a.b.c"``, creating missing blocks (the schema then judges the
    result: a misspelt key is reported as an unknown option, with a near miss)."""
    *blocks, last = dotted.split(".")
    node = opt
    for i, block in enumerate(blocks):
        child = node.get(block)
        if child is None:
            child = node[block] = {}
        if not isinstance(child, dict):
            raise OptionError(f"--set {dotted}: {'.'.join(blocks[:i + 1])} is {type(child).__name__} "
                              f"{child!r}, not a block of options")
        node = child
    node[last] = value


def apply_sets(opt: dict, items: Sequence[str]) -> None:
    """Apply ``--set KEY.PATH=VALUE`` items to ``opt`` in order (see :func:`parse_set`, :func:`set_option`)."""
    for item in items or ():
        set_option(opt, *parse_set(item))


def load_plugins(opt: Mapping[str, Any], where: str = "options.plugins") -> None:
    """Import the Python files (``.py``, resolved like other option paths) or modules listed under ``plugins``.

    They add what the rest of the options may name: a sample type, a backbone, a data set type, a label format
    (each is a registry entry, so a plugin is one file). A file is imported once per process.
    """
    plugins = opt.get("plugins") or []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)) or not all(isinstance(p, str) for p in plugins):
        raise OptionError(f"{where} must be a list of Python files or module names, got {plugins!r}")
    for item in plugins:
        if not item.endswith(".py"):
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as e:
                raise OptionError(f"{where}: cannot import {item!r} ({e}); give a module on the Python path or a "
                                  ".py file") from None
            continue
        path = resolve_path(item, [REPO_ROOT])
        if not os.path.isfile(path):
            raise OptionError(f"{where}: file {item!r} not found (looked in: {os.getcwd()}, {REPO_ROOT})")
        name = "sama_plugin_" + hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the plugin's own fault: one line naming its file and line
            del sys.modules[name]
            raise OptionError(_plugin_fault(where, path, e)) from None
        except BaseException:
            del sys.modules[name]
            raise


def positive_int(value: Any, where: str) -> int:
    """``value`` if it is an integer >= 1; else an :class:`OptionError` naming ``where`` and what it got (a quoted
    number in YAML is a string: said so, since ``'4'`` reads as if 4 were refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{where} must be a positive integer, got {refused_value(value)}")
    return value


def non_negative_int(value: Any, where: str) -> int:
    """``value`` if it is an integer >= 0 (a count where 0 means automatic); else an :class:`OptionError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f"{where} must be an integer >= 0, got {refused_value(value)}")
    return value


def _plugin_fault(where: str, path: str, e: Exception) -> str:
    """What went wrong while a plugin file was imported: a syntax error, or an exception at a line of the file."""
    if isinstance(e, SyntaxError) and os.path.realpath(e.filename or "") == os.path.realpath(path):
        return f"{where}: plugin file {path} has a syntax error at line {e.lineno}: {e.msg}"
    lines = [frame.lineno for frame in traceback.extract_tb(e.__traceback__)
             if os.path.realpath(frame.filename) == os.path.realpath(path)]
    at = f" at line {lines[-1]}" if lines else ""
    detail = " ".join(str(e).split()) or "(no message)"
    return f"{where}: plugin file {path} failed while loading{at}: {type(e).__name__}: {detail}"


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


def typed(mapping: Mapping[str, Any], key: str, kind: Union[type, tuple], where: str, default: Any = ...) -> Any:
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
