"""Snapshots of the app's scenes (tests/support/tui_scenes.py): fixed size, frozen clock, still.

Refresh after an intended change: ``pytest tests/test_tui_snapshots.py --snapshot-update``, look at
the report, then ``python scripts/export_screenshots.py`` for the README's pictures.
"""

from support.tui_scenes import SCENES


def check(snap_compare, name: str) -> None:
    scene = SCENES[name]
    assert snap_compare(scene.make(), terminal_size=scene.size, run_before=scene.run_before)


def test_main_screen(snap_compare):
    check(snap_compare, "main")


def test_docker_unreachable(snap_compare):
    check(snap_compare, "docker-down")


def test_mcp_link_down(snap_compare):
    check(snap_compare, "mcp-down")


def test_access_drift_selected(snap_compare):
    check(snap_compare, "drift")


def test_stuck_document_selected(snap_compare):
    check(snap_compare, "stuck-document")


def test_checkin_confirmation(snap_compare):
    check(snap_compare, "checkin-confirm")


def test_logs_screen(snap_compare):
    check(snap_compare, "logs")


def test_help_screen(snap_compare):
    check(snap_compare, "help")


def test_an_agent_waiting_for_permission(snap_compare):
    check(snap_compare, "permission")


def test_the_demo(snap_compare):
    check(snap_compare, "demo")


def test_the_demo_at_80x24(snap_compare):
    check(snap_compare, "demo-small")


def test_80x24_tab_shows_the_access_matrix(snap_compare):
    check(snap_compare, "demo-small-matrix")


def test_80x24_tab_tab_shows_the_workspace(snap_compare):
    check(snap_compare, "demo-small-workspace")


def test_80x24_shift_tab_shows_the_live_stream(snap_compare):
    check(snap_compare, "demo-small-stream")


def test_z_zooms_the_live_stream(snap_compare):
    check(snap_compare, "demo-zoomed-stream")
