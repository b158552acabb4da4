"""Named entries of one kind, each added in one place: sample types, backbones, dataset types, label formats.

A :class:`Registry` maps names to entries in registration order. ``register`` adds one (also as a decorator, the
way timm's ``register_model`` is used); ``get`` looks one up and, for an unknown name, raises a ``ValueError``
that lists what is registered and suggests a near miss, so option checks can pass the message on as it is.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, Optional, Tuple, TypeVar, overload

from .options import suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in registration order. ``kind`` (e.g. ``"backbone"``) is how messages call an entry."""

    def __init__(self, kind: str, plural: Optional[str] = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: Dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T, replace: bool = False) -> T: ...

    def register(self, name, entry=None, replace=False):
        """Add ``entry`` under ``name`` (returns it); without ``entry``, a decorator that registers what it wraps.

        A name can be registered once (again with an equal entry is fine); ``replace=True`` overwrites it on purpose.
        """
        if entry is None:
            return lambda obj: self.register(name, obj, replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace and self._entries[name] != entry:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to overwrite it)")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. an entry a test registered) and return its entry."""
        return self._entries.pop(name)

    def get(self, name: str, default: object = ...) -> T:
        """The entry of ``name``; else ``default`` when one is given, else a ``ValueError`` naming the registered
        entries (and a near miss)."""
        if name not in self._entries:
            if default is not ...:
                return default  # type: ignore[return-value]
            raise ValueError(f"unknown {self.kind} {name!r}{suggest(name, self._entries)}; registered {self.plural}: "
                             f"{', '.join(sorted(self._entries)) or 'none'}")
        return self._entries[name]

    def names(self) -> Tuple[str, ...]:
        return tuple(self._entries)

    # mapping syntax: ``registry[name]`` is :meth:`get`; assigning or deleting an item replaces or removes an entry
    # on purpose (tests swap an entry with ``monkeypatch.setitem``)
    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry, replace=True)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def values(self):
        return self._entries.values()

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
