"""Shared fixtures. Docker tests skip without an engine, unless QMS_PANEL_REQUIRE_DOCKER=1 (CI)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = [
    "support.docker_env",
    "support.devserver",
    "support.agent_image",
]


def pytest_configure(config):
    # Tests never read the operator's qms-panel.toml or QMS_PANEL_* environment.
    for key in list(os.environ):
        if key.startswith("QMS_PANEL_") and key != "QMS_PANEL_REQUIRE_DOCKER":
            del os.environ[key]
