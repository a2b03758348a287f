"""Named entries of one kind (audio encoders, audio readers): a name is a lower-case word, found
again whatever its case; registering a taken name needs ``replace``.  Light: decode workers
import the registries that use it."""
from __future__ import annotations

from typing import Callable, Generic, Protocol, TypeVar


class Named(Protocol):
    name: str


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """The entries of one ``kind`` (the word the error messages use), by name."""

    def __init__(self, kind: str, check: Callable[[E], None] | None = None):
        self.kind, self.check = kind, check or (lambda entry: None)
        self._entries: dict[str, E] = {}

    def add(self, entry: E, replace: bool = False) -> E:
        """Add ``entry`` (``replace`` to overwrite an entry of the same name); ``check`` runs
        after the name's and before the duplicate's check."""
        if not entry.name or entry.name != entry.name.strip().lower():
            raise ValueError(f"{self.kind} names are lower-case words, got {entry.name!r}")
        self.check(entry)
        if entry.name in self._entries and not replace:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> E:
        """The entry ``name``; ``ValueError`` naming the registered ones otherwise."""
        entry = self._entries.get(str(name).strip().lower())
        if entry is None:
            raise ValueError(f"unknown {self.kind} {name!r}: registered are {', '.join(self.names())}")
        return entry
