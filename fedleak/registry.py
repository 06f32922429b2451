"""A small name → object registry that refuses silent overwrites (models, attacks, datasets)."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fedleak.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; registering a name twice is an error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def remove(self, name: str) -> None:
        """Forget ``name``: a temporary entry, such as a user's own model registered for one attack."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def values(self) -> list[T]:
        """The registered objects, in name order."""
        return [self._items[name] for name in self.names()]
