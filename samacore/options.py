"""Loading and checking YAML option files.

Option files keep the original SAMA / FAST-VQA schema. Every problem is reported as an :class:`OptionError`
that names the key path, what is allowed and, for near misses, what was probably meant.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

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


def load_options(path: str, search_dirs: Sequence[str] = (), overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """Read a YAML option file, looking for ``path`` in the working directory, then in ``search_dirs``;
    ``overrides`` (from the command line) replace top-level keys before anything is checked."""
    resolved = resolve_path(path, search_dirs)
    if os.path.isdir(resolved):
        raise OptionError(f"option file {path!r} is a folder ({resolved}): give a YAML file")
    if not os.path.isfile(resolved):
        if os.path.isabs(os.path.expanduser(str(path))):
            raise OptionError(f"option file {path!r} not found")
        where = ", ".join([os.getcwd()] + [os.path.abspath(d) for d in search_dirs])
        raise OptionError(f"option file {path!r} not found (looked in: {where})")
    with open(resolved, "r", encoding="utf-8") as f:
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
    if not isinstance(opt, dict):
        raise OptionError(f"option file {resolved} must hold a mapping of options, got {type(opt).__name__}")
    opt.update(overrides or {})
    opt["_options_path"] = resolved
    return opt


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


# Types and lower bounds of the run options both trees share: (kind, smallest allowed value or None).
COMMON_TYPES: dict = {
    "name": (str, None), "stype": (str, None),
    "num_epochs": (int, 0), "l_num_epochs": (int, 0), "warmup_epochs": (float, 0), "constant_epochs": (float, 0),
    "ema": (bool, None), "ema_decay": (float, 0), "ema_warmup": (bool, None), "save_model": (bool, None),
    "seed": (int, 0),
    "train_batch_size": (int, 1), "test_batch_size": (int, 1), "batch_size": (int, 1),
    "train_num_workers": (int, 0), "test_num_workers": (int, 0), "num_workers": (int, 0),
    "num_splits": (int, 1), "split_seed": (int, None), "prefetch_factor": (int, 1),
    "pin_memory": (bool, None), "persistent_workers": (bool, None), "allow_partial_load": (bool, None),
    "deterministic": (bool, None), "progress": (bool, None), "max_bad_steps": (int, 1),
    "max_bad_fraction": (float, 0), "stop_after_epochs": (int, 1), "trust_checkpoint": (bool, None),
    "optimizer.lr": (float, 0), "optimizer.backbone_lr_mult": (float, 0), "optimizer.wd": (float, 0),
}


def check_types(opt: Mapping[str, Any], spec: Mapping[str, tuple] = COMMON_TYPES, where: str = "options") -> None:
    """Check the type and lower bound of every key of ``spec`` present in ``opt`` (``a.b`` looks inside ``opt["a"]``).

    ``None`` values are treated as absent (YAML ``key:`` with nothing after it).
    """
    for path, (kind, low) in spec.items():
        parent, key = opt, path
        if "." in path:
            head, key = path.split(".", 1)
            parent = opt.get(head)
            if not isinstance(parent, Mapping):
                continue
        if parent.get(key) is None:
            continue
        value = typed(parent, key, kind, f"{where}.{path.rsplit('.', 1)[0]}" if "." in path else where)
        if low is not None and value < low:
            raise OptionError(f"{where}.{path} must be at least {low}, got {value!r}")
