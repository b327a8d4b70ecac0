"""core is headless: importing every core module loads no textual, rich or tui."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import core

FORBIDDEN = ("textual", "rich", "tui")


def all_core_modules() -> list[str]:
    names = ["core"]
    for mod in pkgutil.walk_packages(core.__path__, prefix="core."):
        if not mod.name.endswith("__main__"):
            names.append(mod.name)
    return names


def test_core_imports_no_ui_modules():
    modules = all_core_modules()
    assert "core.settings" in modules and "core.layout" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, check=True)
    assert json.loads(out.stdout) == [], f"core pulled in UI modules: {out.stdout}"


def test_the_check_would_catch_a_leak():
    """The subprocess check really sees an import of textual (so the test above can fail)."""
    code = "import sys, textual; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
