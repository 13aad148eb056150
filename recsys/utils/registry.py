"""Named plugins that register themselves: one module per entry in one package, found on first lookup.

Used by ``recsys.kinds`` (model kinds) and ``recsys.losses`` (losses): adding an entry is adding a module to
the package; the config, the dispatch and the error messages read the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Entries of one kind (``what``: "loss", "model kind"), keyed by name, from the modules of ``package``."""

    def __init__(self, what: str, package: str, field: str) -> None:
        self.what, self.package, self.field = what, package, field
        self.entries: dict[str, T] = {}
        self._loaded = False

    def register(self, entry: T) -> T:
        """Add ``entry``; a second, different entry of one name is an error (names are config values)."""
        old = self.entries.get(entry.name)
        if old is not None and old != entry:
            raise ValueError(f"{self.what} {entry.name!r} is registered twice")
        self.entries[entry.name] = entry
        return entry

    def load(self) -> None:
        """Import every public module of the package (each registers its entries)."""
        if self._loaded:
            return
        self._loaded = True  # first, so that a module importing the registry while it loads does not recurse
        spec = importlib.util.find_spec(self.package)
        paths = list(spec.submodule_search_locations or []) if spec else []
        for mod in pkgutil.iter_modules(paths):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def names(self) -> list[str]:
        self.load()
        return list(self.entries)

    def get(self, name: str, field: str | None = None) -> T:
        """The entry called ``name``; an unknown name fails naming the config field and the valid names."""
        self.load()
        if name not in self.entries:
            raise ValueError(
                f"{field or self.field} {name!r} is not a {self.what}; choose from {sorted(self.entries)}"
            )
        return self.entries[name]

    def values(self) -> list[T]:
        self.load()
        return list(self.entries.values())
