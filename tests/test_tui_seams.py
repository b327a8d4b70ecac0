"""The real bundle and the scene fakes satisfy the same Protocols (``tui.seams``), checked statically.

For every member a protocol declares, the implementation has it: a method with the same
parameters (names, kinds, defaults; extra parameters only with a default), the same type hints
(``typing.get_type_hints``: parameters and return), and the same flavour (coroutine or not); an
attribute whose declared type (for a class) or value (for a bundle instance) satisfies the
protocol the seam names, recursively. No fake can drift from the real class unnoticed, and the
app cannot rely on a member the real bundle lacks.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import typing
from pathlib import Path
from typing import Any, Protocol

import pytest

from core.services import Services
from support import tui_scenes as scenes
from tui import seams


@functools.cache
def namespace(module: str) -> dict[str, Any]:
    """The module's globals plus what it imports under ``if TYPE_CHECKING:`` (to resolve its hints)."""
    mod = sys.modules[module]
    names = dict(vars(mod))
    tree = ast.parse(Path(mod.__file__ or "").read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            exec(compile(ast.Module(body=node.body, type_ignores=[]), mod.__file__ or "", "exec"), names)
    return names


def type_hints(obj: Any) -> dict[str, Any]:
    module = getattr(obj, "__module__", None)
    return typing.get_type_hints(obj, globalns=namespace(module) if module in sys.modules else None)


def members(protocol: type) -> dict[str, Any]:
    """The protocol's own members: name -> function, property or annotated type."""
    found: dict[str, Any] = dict(type_hints(protocol))
    for name, value in vars(protocol).items():
        if (inspect.isfunction(value) or isinstance(value, property)) and (
                not name.startswith("_") or name in ("__aiter__", "__anext__", "__aenter__", "__aexit__")):
            found[name] = value
    return found


def _is_protocol(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Protocol) and tp is not Protocol  # type: ignore[arg-type]


def _hints(fn: Any) -> dict[str, Any]:
    return type_hints(fn)


_ASSUMED: set[tuple[type, type]] = set()  # (protocol, class) pairs being checked (a self-referring seam)


def _fits(declared: Any, actual: Any) -> bool:
    """An implementation's hint fits the protocol's: equal, or it names a class satisfying the protocol."""
    if declared == actual:
        return True
    if not (_is_protocol(declared) and isinstance(actual, type)):
        return False
    if (declared, actual) in _ASSUMED:
        return True
    _ASSUMED.add((declared, actual))
    try:
        return not problems(declared, actual)
    finally:
        _ASSUMED.discard((declared, actual))


def method_problems(name: str, want: Any, have: Any) -> list[str]:
    if isinstance(want, property):
        want = want.fget
        have = have.fget if isinstance(have, property) else None
        if have is None:
            return [f"{name}: should be a property"]
    if not callable(have):
        return [f"{name}: not a method"]
    out = []
    if inspect.iscoroutinefunction(want) != inspect.iscoroutinefunction(have):
        out.append(f"{name}: async in one, not in the other")
    wp, hp = inspect.signature(want).parameters, inspect.signature(have).parameters
    for pname, param in wp.items():
        other = hp.get(pname)
        if other is None:
            out.append(f"{name}: no parameter {pname!r}")
        elif (other.kind, other.default) != (param.kind, param.default):
            out.append(f"{name}({pname}): kind or default differs")
    out += [f"{name}: extra parameter {p!r} without a default" for p, param in hp.items()
            if p not in wp and param.default is param.empty and param.kind not in (param.VAR_POSITIONAL,
                                                                                   param.VAR_KEYWORD)]
    want_hints, have_hints = _hints(want), _hints(have)
    for key, tp in want_hints.items():
        if key not in have_hints:
            out.append(f"{name}: no type hint for {key}")
        elif not _fits(tp, have_hints[key]):
            out.append(f"{name}: {key} is {have_hints[key]}, the seam says {tp}")
    return out


def problems(protocol: type, impl: Any) -> list[str]:
    """What ``impl`` (a class, or an instance for a bundle's attribute values) lacks of ``protocol``."""
    cls = impl if isinstance(impl, type) else type(impl)
    hints = type_hints(cls)
    out = []
    for name, want in members(protocol).items():
        if inspect.isfunction(want) or isinstance(want, property):
            have = inspect.getattr_static(cls, name, None)
            if have is None:
                out.append(f"{cls.__name__}.{name}: missing")
            else:
                out += [f"{cls.__name__}.{p}" for p in method_problems(name, want, have)]
            continue
        if not isinstance(impl, type):  # an instance: the value must satisfy the seam
            value = getattr(impl, name, None)
            if _is_protocol(want):
                out += problems(want, type(value))
            elif name not in hints:
                out.append(f"{cls.__name__}.{name}: missing")
            continue
        if name not in hints:
            out.append(f"{cls.__name__}.{name}: no such field")
        elif not _fits(want, hints[name]):
            out.append(f"{cls.__name__}.{name}: is {hints[name]}, the seam says {want}")
    return out


def test_the_real_bundle_satisfies_the_seams():
    assert problems(seams.PanelServices, Services) == []


def test_the_scene_fakes_satisfy_the_same_seams():
    bundle = scenes.services()
    assert problems(seams.PanelServices, type(bundle)) == []
    assert problems(seams.PanelServices, bundle) == []


@pytest.mark.parametrize("protocol", [seams.ContainerBoardSeam, seams.QmsBoardSeam, seams.OpsSeam])
def test_a_drifted_fake_is_caught(protocol):
    class Drifted:
        def refresh(self, soon: bool) -> None: ...

        def updates(self) -> list[int]: ...

        def checkin(self, doc_id: str) -> None: ...

    assert problems(protocol, Drifted)
