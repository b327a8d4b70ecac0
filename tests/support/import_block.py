"""Import modules in a fresh interpreter where some packages cannot be imported at all.

``import_without(blocked, modules, then=..., test=...)`` runs ``python -c`` from the repository:
a meta-path finder refuses every package in ``blocked`` (``blocked by the <test> test: <name>``),
the modules are imported, ``then`` runs, and stdout is the JSON list of the blocked packages'
modules found in ``sys.modules`` (expected: none). The hygiene and the startup tests use it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def import_without(blocked: tuple[str, ...], modules: list[str], *, then: str = "",
                   test: str = "import") -> subprocess.CompletedProcess:
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"blocked by the {test} test: {{name}}", name=name)
sys.meta_path.insert(0, Block())
import importlib, json
for name in {modules!r}: importlib.import_module(name)
{then}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {blocked!r})))
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
