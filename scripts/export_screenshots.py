"""Regenerate screenshots/*.svg from the scenes the snapshot tests use (tests/support/tui_scenes.py).

    python scripts/export_screenshots.py [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's app, whatever is installed

from support.tui_scenes import SCENES  # noqa: E402


async def save_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for scene in SCENES.values():
        app = scene.make()
        async with app.run_test(size=scene.size) as pilot:
            await scene.run_before(pilot)
            path = Path(app.save_screenshot(filename=f"{scene.name}.svg", path=str(out)))
        saved.append(path)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {scene.description}")
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "screenshots", help="folder for the SVG files")
    args = parser.parse_args()
    asyncio.run(save_all(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
