"""Library log records never reach the terminal the panel draws on (QMS_PANEL_LOG keeps them)."""

import subprocess
import sys

CODE = """
import logging
from tui.launch import quiet_library_logs
quiet_library_logs()
logging.getLogger("mcp.client.sse").error("Error in sse_reader: the server went away")
"""


def run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=60)


def test_library_errors_stay_off_the_terminal():
    import os

    env = {k: v for k, v in os.environ.items() if k != "QMS_PANEL_LOG"}
    done = run(env)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""
    # without the call, Python's last-resort handler would have printed it (so the test can fail)
    plain = subprocess.run([sys.executable, "-c", "import logging; logging.getLogger('mcp').error('boom')"],
                           capture_output=True, text=True, timeout=60)
    assert "boom" in plain.stderr


def test_qms_panel_log_keeps_them_in_a_file(tmp_path):
    import os

    log = tmp_path / "panel.log"
    done = run({**os.environ, "QMS_PANEL_LOG": str(log)})
    assert done.returncode == 0 and done.stderr == ""
    assert "mcp.client.sse ERROR: Error in sse_reader" in log.read_text()
