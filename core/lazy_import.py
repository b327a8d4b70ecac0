"""A third-party module loaded on its first use, so that importing a core module stays cheap.

The panel draws its first frame from the core's rows and views (pydantic models); the modules
that define them also hold the code that talks to Docker or over HTTP. ``docker``, ``requests``
and ``httpx`` cost a third of a second to import, so those modules name them through
:func:`lazy_module`: the name is bound at once, the module is imported (by the normal, thread-safe
import machinery) when an attribute is first read, i.e. when the code first talks to the engine
or a server, in the thread that builds the services. Only modules that are used through their
attributes can be deferred this way: a class statement that subclasses an SDK class needs the
module at once (:mod:`core.mcp_link` keeps its imports; its state model is in
:mod:`core.link_state`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``; ``proxy.attr`` imports it (once) and reads ``attr``.

    An attribute that is a submodule not imported by the package itself (``docker.types``) is
    imported as ``name.attr``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        try:
            return getattr(module, attr)
        except AttributeError:
            try:
                return importlib.import_module(f"{self._name}.{attr}")
            except ModuleNotFoundError:
                raise AttributeError(f"module {self._name!r} has no attribute {attr!r}") from None

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """``name``, imported on its first attribute read (typed ``Any``: it stands for the module)."""
    return LazyModule(name)


def loaded(module: ModuleType | LazyModule) -> bool:
    """Whether the module behind ``module`` has been imported yet (for tests and benchmarks)."""
    import sys

    return isinstance(module, ModuleType) or module._name in sys.modules
