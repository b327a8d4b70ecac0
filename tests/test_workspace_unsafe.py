"""The Workspace pane shows an unsafe workspace entry (issue 11, item 5) as a warning state of its
own, from a real scan of real files: its row, its count in the title, and its reason in the notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textual.app import App, ComposeResult

from core.devserver.sample import init_project
from core.layout import workspace_dir
from core.qms_state import RowState, scan
from tui.widgets.workspace import WorkspacePane


class PaneApp(App):
    def compose(self) -> ComposeResult:
        yield WorkspacePane()


async def test_an_unsafe_copy_is_its_own_warning_state_in_the_pane(tmp_path):
    root = tmp_path / "pipe-dream"
    init_project(root)
    copy = workspace_dir(root, "claude") / "CR-001.md"  # CR-001 is checked out to claude
    copy.unlink()
    copy.symlink_to("/etc/passwd")
    snapshot = scan(root, stuck_after=timedelta(hours=4))
    assert snapshot.row("CR-001").state is RowState.UNSAFE

    app = PaneApp()
    async with app.run_test(size=(140, 20)) as pilot:
        pane = app.query_one(WorkspacePane)
        pane.now = datetime.now(UTC)
        pane.rows = snapshot.checkouts
        pane.scanned = True
        await pilot.pause()
        assert "1 unsafe" in pane.border_title
        first = pane.table.get_row_at(0)
        assert first[0].plain == "CR-001" and first[-1].plain == "unsafe"  # unsafe rows sort first
        notice = pane._notice.plain
        assert "CR-001: unsafe: CR-001.md is a symlink; checkin and repair refuse it" in notice
