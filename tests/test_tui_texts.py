"""What the panel says when a key has nothing to act on, and what its dialogs promise (issue 15),
over the real bundle: the dev server, the real engine, real files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from core.qms_state import CheckoutRow
from test_tui_pilot import SIZE, meta, notifications, panel, ready, until  # noqa: F401 - panel is a fixture
from tui.app import make_app
from tui.screens.main import checkin_body, repair_body


async def notice_after(pilot, key: str, title: str) -> str:
    """Press ``key`` and return the one notification titled ``title`` it brings."""
    app = pilot.app
    await pilot.press(key)
    await until(pilot, lambda: any(n.startswith(title) for n in notifications(app)), f"{title!r} after {key}")
    [said] = [n for n in notifications(app) if n.startswith(title)]
    return said


@pytest.mark.docker
async def test_a_with_no_container_says_there_is_nothing_to_audit(panel):
    settings, services, _ = panel
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: services.container_board.view.listed, "the first container list")
        said = await notice_after(pilot, "a", "Nothing to audit")
        assert said == ("Nothing to audit: No container of this project is running; the audit reads the mounts of "
                        "running containers and probes them. Launch one first.")
        assert not app.main.auditing


@pytest.mark.docker
async def test_o_with_the_link_down_says_nothing_was_done(panel):
    settings, services, server = panel
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        server.stop()
        await until(pilot, lambda: app.main.link_down, "the link to go down")
        said = await notice_after(pilot, "o", "MCP link down")
        assert "nothing was done" in said and "Checkout needs the link" in said and "waits" not in said
        assert type(app.screen).__name__ == "MainScreen"  # no question asked for a checkout that cannot run


def _text(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return " ".join(console.export_text().split())


def test_the_dialogs_promise_no_wait_and_name_the_repair_command(sample_project):
    row = CheckoutRow(doc_id="CR-001", doc_type="CR", version="0.1", status="DRAFT", title="A change",
                      holder="claude", held_since=None, held_since_source=None, checked_out_date=None,
                      workspace_file=None, last_edit=None, state="missing-copy")
    repair = _text(repair_body(row))
    assert "cannot repair" not in repair and "`qms-panel repair` does the same from the command line" in repair
    checkin = _text(checkin_body(row, datetime(2026, 1, 1, tzinfo=UTC), True, sample_project))
    assert "identity locked" in checkin and "90 s" not in checkin and "300 s" not in checkin


@pytest.mark.docker
async def test_checkout_of_a_document_in_review_warns_it_will_be_withdrawn_then_asks(panel, sample_project):
    settings, services, _ = panel
    assert meta(sample_project, "CR-003")["status"] == "IN_PRE_REVIEW"  # claude's, in review
    app = make_app(settings, services)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("o")
        await until(pilot, lambda: type(app.screen).__name__ == "InputScreen", "the document id question")
        await pilot.press(*"CR-003", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the warning")
        assert "CR-003 is IN_PRE_REVIEW: checking it out withdraws it from pre-review" in _text(app.screen._body)
        assert meta(sample_project, "CR-003")["checked_out"] is False  # nothing done before the answer
        await pilot.press(*"take it back", "enter")
        await until(pilot, lambda: meta(sample_project, "CR-003")["checked_out"], "CR-003 checked out")
        assert meta(sample_project, "CR-003")["status"] == "DRAFT"  # the server withdrew it, as warned
