"""The panel's layout per terminal size and its keys, driven by Textual's pilot over the demo scene
(tests/support/tui_scenes.py): every pane reachable at 80x24, all four at 160x46, keyboard
selection in every pane, keys that act on the focused pane's highlighted row and say so."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from core.mcp_link import LinkState
from support import tui_scenes as scenes
from tui.actions import ACTIONS, key_label, palette
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import SECTIONS, help_table
from tui.screens.main import PANES
from tui.widgets.pane_tabs import PaneTabs
from tui.widgets.status_bar import StatusBar, link_text
from tui.widgets.target_line import TargetLine


def shown(app) -> list[str]:
    """The panes that take room on the screen now."""
    main = app.main
    return [pane for pane in PANES if main.query_one(f"#{pane}").region.area
            and (main.maximized is None or main.maximized.id == pane)]


def target_line(app) -> str:
    return app.main.query_one(TargetLine).render().plain


async def test_at_80x24_every_pane_is_reached_with_tab_and_fills_the_screen():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SMALL) as pilot:
        await scenes.settle(pilot)
        main = app.main
        assert main.compact and main.query_one(PaneTabs).display
        seen = []
        for _ in PANES:
            seen.append(shown(app))
            pane = main.query_one(f"#{main.pane}")
            assert pane.region.width == 80 and pane.region.height >= 15, (main.pane, pane.region)
            assert main.pane_of(main.focused) == main.pane  # the pane shown is the one the keys act on
            await pilot.press("tab")
            await pilot.pause()
        assert seen == [[p] for p in PANES]
        assert main.pane == "containers"  # round the four and back
        await pilot.press("shift+tab")
        await pilot.pause()
        assert shown(app) == ["stream"] and main.stream.view.has_focus
        await pilot.press("z")  # no zoom to undo at this size: said, and still one pane
        await pilot.pause()
        assert shown(app) == ["stream"] and any("one at a time" in m for _, _, m in app.notices)


async def test_at_160x46_all_four_panes_show_and_z_zooms_the_focused_one():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        main = app.main
        assert not main.compact and shown(app) == list(PANES)
        assert not main.query_one(PaneTabs).display
        await pilot.press("tab", "tab")
        await pilot.press("z")
        await pilot.pause()
        assert shown(app) == ["workspace"] and main.workspace.region.width == 160
        await pilot.press("tab")  # zoomed, tab shows the next pane alone
        await pilot.pause()
        assert shown(app) == ["stream"]
        await pilot.press("z")
        await pilot.pause()
        assert shown(app) == list(PANES) and main.stream.view.has_focus


async def test_a_terminal_that_shrinks_goes_to_one_pane_and_back():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        await pilot.resize_terminal(*scenes.SMALL)
        await pilot.pause()
        assert shown(app) == ["containers"]
        await pilot.resize_terminal(*scenes.SIZE)
        await pilot.pause()
        assert shown(app) == list(PANES)


@pytest.mark.parametrize("size", [scenes.SIZE, scenes.SMALL])
async def test_arrows_j_k_home_and_end_move_the_selection_in_every_table(size):
    app = scenes.demo_app()
    async with app.run_test(size=size) as pilot:
        await scenes.settle(pilot)
        main = app.main
        pane = main.containers_pane
        assert pane.selected_agent == "claude"
        await pilot.press("j")
        assert pane.selected_agent == "lead" and main.selected_agent == "lead"
        await pilot.press("down")
        assert pane.selected_agent == "qa"
        await pilot.press("k")
        assert pane.selected_agent == "lead"
        await pilot.press("end")
        assert pane.selected_agent == "tu_ui"
        await pilot.press("home")
        assert pane.selected_agent == "claude"
        await pilot.press("tab")  # the Access matrix of claude
        matrix = main.query_one("#matrix")
        await pilot.press("end")
        assert matrix.table.cursor_row == matrix.table.row_count - 1 > 0
        await pilot.press("k", "up")
        assert matrix.table.cursor_row == matrix.table.row_count - 3
        await pilot.press("tab")  # the Workspace
        docs = main.workspace
        assert docs.selected.doc_id == "CR-002"
        await pilot.press("j")
        assert docs.selected.doc_id == "CR-004"
        await pilot.press("end")
        assert docs.selected.doc_id == "SOP-002"
        await pilot.press("home")
        assert docs.selected.doc_id == "CR-002"


async def test_arrows_j_k_home_and_end_move_the_selection_in_the_stream():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SMALL) as pilot:
        await scenes.settle(pilot)
        await pilot.press("shift+tab")
        view = app.main.stream.view
        last = view.shown - 1
        assert view.cursor == last and view.following
        await pilot.press("k")
        assert view.cursor == last - 1 and not view.following
        await pilot.press("up", "j")
        assert view.cursor == last - 1
        await pilot.press("home")
        assert view.cursor == 0
        await pilot.press("end")
        assert view.cursor == last and view.following


async def test_the_target_line_names_what_a_key_acts_on_in_the_focused_pane():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SMALL) as pilot:
        await scenes.settle(pilot)
        assert "r restart claude" in target_line(app) and "o check out for claude" in target_line(app)
        await pilot.press("j")
        assert "r restart lead" in target_line(app)
        await pilot.press("tab", "tab")
        assert target_line(app) == "c check in CR-002 (lead)"
        await pilot.press("j")
        assert target_line(app) == "c check in CR-004 (claude)"
        await pilot.press("k", "c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.screen._title == "Check in CR-002 for lead"
        await pilot.press("escape")
        await pilot.pause()


async def test_a_key_for_another_panes_row_says_where_to_go_and_does_nothing():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        main = app.main
        await pilot.press("c")  # the Containers pane has focus: no document is highlighted there
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.notices[-1][1] == "c: wrong pane" and "Workspace" in app.notices[-1][2]
        await pilot.press("tab", "tab", "r")  # the Workspace: r restarts an agent, highlighted elsewhere
        await pilot.pause()
        assert app.notices[-1][1] == "r: wrong pane" and "Containers or Access matrix" in app.notices[-1][2]
        assert not main.busy
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)


async def test_stream_keys_work_from_every_pane_and_heartbeats_start_hidden():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        main, view = app.main, app.main.stream.view
        assert "beat" not in view.sources and not any(ln.source == "beat" for ln in view.lines())
        for pane in ("containers", "matrix", "workspace"):
            main.focus_pane(pane)
            await pilot.press("1")
            assert "agents" not in view.sources, pane
            await pilot.press("1", "3")
            assert "agents" in view.sources and "docker" not in view.sources, pane
            await pilot.press("3")
        main.focus_pane("workspace")
        await pilot.press("slash", *"qa")
        assert view.needle == "qa"


async def test_the_pause_counter_counts_while_paused():
    app = scenes.app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        stream = app.main.stream
        await pilot.press("space")
        status = stream.query_one("#stream-status")
        for i in range(3):
            stream.push(app.lines.note(scenes.NOW, "qms", "qa", f"line {i}"))
            await scenes.until(pilot, lambda: f"paused ({i + 1:,} new" in status.render().plain, f"the counter at {i + 1}")
        await pilot.press("space")
        await pilot.pause()
        assert "paused" not in status.render().plain and stream.pending == 0


def test_each_action_has_one_name_in_the_footer_the_palette_and_the_help():
    console = Console(width=400, file=io.StringIO(), record=True)
    console.print(help_table())
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    for action in (a for a in ACTIONS if a.scope in {scope for _, scope in SECTIONS}):
        row = f"{key_label(action)} {action.label} {' '.join(action.help.split())}"
        assert row in lines, action.id
    titles = {a.id: a.label for a in palette("main")}
    assert titles["checks.doctor"] == "Doctor"
    from tui.actions import bindings
    footer = {b.id: b.description for b in bindings("main")}
    assert all(footer[i] == label for i, label in titles.items())
    assert "ctrl+p Commands Open the command palette" in lines  # the palette's key, with the other keys


async def test_the_header_says_where_the_server_and_the_gateway_are():
    app = scenes.demo_app()
    async with app.run_test(size=scenes.SIZE) as pilot:
        await scenes.settle(pilot)
        header = app.main.query_one(StatusBar).render().plain
        assert "MCP 172.17.0.1:8000/mcp ● connected" in header
        assert "Gateway ● 172.17.0.1:8000 → 127.0.0.1:41873/mcp up" in header
    hostile = LinkState(status="down", transport="sse", url="http://***@10.0.0.9:8000/sse\x1b[2J", reason="refused",
                        since=scenes.NOW)
    text = link_text(hostile)
    assert isinstance(text, Text) and "\x1b" not in text.plain and "***@10.0.0.9:8000/sse" in text.plain


async def test_a_long_state_line_wraps_in_a_small_terminal():
    app = scenes.app(scenes.services(engine=False))
    async with app.run_test(size=scenes.SMALL) as pilot:
        await scenes.settle(pilot)
        notice = app.main.containers_pane.query_one(".pane--notice")
        said = notice.render().plain
        assert "Retrying in 8 s (attempt 6)." in said and "Connection refused" in said
        assert notice.region.width <= 80 and notice.region.height > said.count("\n") + 1  # it wrapped, not cut


@pytest.mark.parametrize("size", [scenes.SIZE, scenes.SMALL])
async def test_no_table_is_wider_than_its_pane(size):
    """Each pane picks columns that fit: nothing hides past a horizontal scroll, at 160x46 or 80x24."""
    app = scenes.demo_app()
    async with app.run_test(size=size) as pilot:
        await scenes.settle(pilot)
        for pane in PANES[:3]:
            app.main.focus_pane(pane)
            await pilot.pause()
            table = app.main.query_one(f"#{pane}").table
            assert table.virtual_size.width <= table.scrollable_content_region.width, (pane, size)


def test_long_paths_keep_the_same_last_folders_on_every_row():
    from tui.widgets.matrix import short_path, tail_depth

    paths = ["/", "/pipe-dream", "/pipe-dream/.claude/users/claude/inbox", "/pipe-dream/.claude/users/claude/workspace"]
    assert tail_depth(paths, 44) is None and short_path(paths[3], 44, None) == paths[3]
    depth = tail_depth(paths, 18)
    assert [short_path(p, 18, depth) for p in paths] == ["/", "/pipe-dream", "…/claude/inbox", "…/claude/workspace"]
    depth = tail_depth(paths, 16)
    assert [short_path(p, 16, depth) for p in paths[2:]] == ["…/inbox", "…/workspace"]
    assert short_path("/" + "x" * 30, 8, tail_depth(["/" + "x" * 30], 8)) == "…/xxxxx…"  # eight cells
