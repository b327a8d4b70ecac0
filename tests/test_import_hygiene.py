"""core is headless: it imports no textual, rich or tui.

Third-party libraries may reach for rich when it happens to be installed (httpx's optional
command line does), so the check runs every core module in a subprocess where textual, rich
and tui cannot be imported at all: core must import and work without them, and none of them
may end up in ``sys.modules``. A static scan of core's sources backs it up.
"""

import json
import pkgutil
import re
import subprocess
from pathlib import Path

import core
from support.import_block import import_without

FORBIDDEN = ("textual", "rich", "tui")
ROOT = Path(__file__).parent.parent

def all_core_modules() -> list[str]:
    names = ["core"]
    for mod in pkgutil.walk_packages(core.__path__, prefix="core."):
        if not mod.name.endswith("__main__"):
            names.append(mod.name)
    return names


def run_isolated(modules: list[str]) -> subprocess.CompletedProcess:
    return import_without(FORBIDDEN, modules, test="hygiene")


def test_every_core_module_imports_without_ui_libraries():
    modules = all_core_modules()
    assert "core.settings" in modules and "core.layout" in modules
    proc = run_isolated(modules)
    assert proc.returncode == 0, f"a core module needs a UI library:\n{proc.stderr[-2000:]}"
    assert json.loads(proc.stdout) == []


def test_core_sources_never_name_ui_libraries():
    pattern = re.compile(r"^\s*(from|import)\s+(" + "|".join(FORBIDDEN) + r")\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_the_isolated_check_would_catch_a_leak():
    """The blocker really stops an import of textual, so the first test can fail."""
    proc = run_isolated(["json", "textual"])
    assert proc.returncode != 0 and "blocked by the hygiene test: textual" in proc.stderr
