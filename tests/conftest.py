"""Shared fixtures. Docker tests skip without an engine, unless QMS_PANEL_REQUIRE_DOCKER=1 (CI)."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = [
    "support.docker_env",
    "support.devserver",
    "support.gateway",
    "support.agent_image",
]


def pytest_configure(config):
    # Tests never read the operator's qms-panel.toml or QMS_PANEL_* environment.
    for key in list(os.environ):
        if key.startswith("QMS_PANEL_") and key != "QMS_PANEL_REQUIRE_DOCKER":
            del os.environ[key]
    # Nor write to the operator's own state folder (the action log): a folder of this session's,
    # also as XDG_STATE_HOME for the subprocesses that drop every QMS_PANEL_* variable.
    state = tempfile.mkdtemp(prefix="qms-panel-test-state-")
    config.qms_panel_state = state
    os.environ["QMS_PANEL_STATE_DIR"] = os.path.join(state, "qms-panel")
    os.environ["XDG_STATE_HOME"] = state


def pytest_unconfigure(config):
    state = getattr(config, "qms_panel_state", None)
    if state:
        shutil.rmtree(state, ignore_errors=True)
