"""A typed registry with decorators, lazy built-ins, entry points and did-you-mean errors (after lm-eval's)."""
from __future__ import annotations

import ast
import difflib
import importlib
import re
from pathlib import Path
from typing import Callable, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # names become folder names in the run store: no separators, no ".."


def check_name(kind: str, name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise BenchError(f"{kind} name {name!r} is not allowed; use lower-case letters, digits, '_', '.' and '-', "
                         "starting with a letter or digit")
    return name


def suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class Registry(Generic[T]):
    """Name -> class. Built-ins are lazy "module:Class" strings so `bench list` stays cheap to import."""

    def __init__(self, kind: str, base: type, entry_point_group: str | None = None):
        self.kind = kind
        self.base = base
        self.entry_point_group = entry_point_group
        self._items: dict[str, type[T] | str] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            self.add(name, cls)
            return cls

        return decorator

    def add(self, name: str, target: type[T] | str) -> None:
        check_name(self.kind, name)
        if not isinstance(target, str) and not (isinstance(target, type) and issubclass(target, self.base)):
            raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}")
        current = self._items.get(name)
        if current is not None and current is not target and not self._same_lazy(current, target):
            raise BenchError(f"{self.kind} name {name!r} is already registered by {self._label(current)}; pick another name")
        if not isinstance(target, str) and not target.__dict__.get("name"):
            target.name = name  # its first name; an alias never renames a class others already use
        self._items[name] = target

    def discover(self, package: str, decorator: str) -> list[str]:
        """Register, lazily, every class decorated `@<decorator>("name")` in the modules of `package` (found by
        reading their source, so nothing is imported until used): a new built-in is one new file. Returns the
        names found, in file order."""
        folder = Path(importlib.import_module(package).__file__).parent
        found = []
        for path in sorted(folder.glob("*.py")):
            for node in ast.parse(path.read_text()).body:
                for dec in getattr(node, "decorator_list", ()) if isinstance(node, ast.ClassDef) else ():
                    if (isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == decorator and dec.args
                            and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str)):
                        self.add(dec.args[0].value, f"{package}.{path.stem}:{node.name}")
                        found.append(dec.args[0].value)
        return found

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        self._load_entry_points()
        if name not in self._items:
            raise BenchError(f"unknown {self.kind} {name!r}{suggest(name, list(self._items))}; `bench list` shows all")
        target = self._items[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            self.add(name, cls)
            target = cls
        return target

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self.entry_point_group:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.value

    @staticmethod
    def _same_lazy(current, target) -> bool:
        label = lambda x: x if isinstance(x, str) else f"{x.__module__}:{x.__qualname__}"
        return label(current) == label(target)

    @staticmethod
    def _label(target) -> str:
        return target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"
