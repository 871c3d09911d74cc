"""One small registry for every pluggable kind (dataset formats, splits, losses, models, encoders).

A registry maps names to objects and fails on an unknown name with a ConfigError that lists what is
valid, so a typo in a config is named at load time. It is read-only to callers except through
`register`, which refuses to overwrite a name silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar, overload

from crossrec.errors import ConfigError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names -> objects of one kind (`kind` appears in error messages: "unknown model 'x'")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> T | Callable[[T], T]:
        """Add `obj` under `name` (or use as a decorator); re-registering a name needs `replace=True`."""

        def add(value: T) -> T:
            if name in self._entries and not replace and self._entries[name] is not value:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = value
            return value

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove a plug-in's entry (a registration scoped to a test or a session)."""
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of {', '.join(self._entries)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._entries.get(name, default)

    def name_of(self, obj: object) -> str:
        """The name `obj` is registered under (run bundles save a model class by this name)."""
        for name, value in self._entries.items():
            if value is obj:
                return name
        raise ConfigError(f"{obj!r} is not a registered {self.kind}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
