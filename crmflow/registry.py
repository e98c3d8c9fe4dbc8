"""The one registry of trigger kinds, condition operators and action types.

Each kind registers itself here with a decorator; the compiler looks names up here and
the JSON Schema is generated from here, so code and schema cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> definition, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def add(self, name: str, item: T) -> T:
        return self.register(name)(item)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())

    def names(self) -> list[str]:
        return list(self._items)


def load_all() -> None:
    """Import the modules that fill the registries."""
    import crmflow.actions
    import crmflow.operators
    import crmflow.triggers  # noqa: F401


# Filled by crmflow.operators, crmflow.triggers and crmflow.actions on import.
OPERATORS: Registry = Registry("operator")
TRIGGERS: Registry = Registry("trigger")
ACTIONS: Registry = Registry("action")
