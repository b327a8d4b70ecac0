"""The vision's access matrix as data, resolved for an agent and a project root."""

from pathlib import Path

import pytest

from core import layout
from core.errors import InvalidAgentId


def test_matrix_matches_the_vision():
    lay = layout.resolve("claude", Path("/srv/pipe-dream"))
    rows = {r.container_path: r for r in lay.rules}
    assert list(rows) == [
        "/", "/.mcp.json", "/projects", "/pipe-dream",
        "/pipe-dream/.claude/users/claude/inbox", "/pipe-dream/.claude/users/claude/workspace",
    ]
    assert rows["/"].access is layout.Access.READ_WRITE
    assert rows["/.mcp.json"].access is layout.Access.BAKED
    assert rows["/projects"].access is layout.Access.READ_WRITE
    assert rows["/pipe-dream"].access is layout.Access.READ_ONLY
    assert rows["/pipe-dream/.claude/users/claude/inbox"].access is layout.Access.READ_ONLY
    assert rows["/pipe-dream/.claude/users/claude/workspace"].access is layout.Access.READ_WRITE


def test_mounts_are_derived_from_the_rules():
    lay = layout.resolve("qa", Path("/srv/pd"), container_prefix="p-", deploy_key=Path("/keys/k"))
    mounts = {m.target: m for m in lay.mounts}
    assert mounts["/pipe-dream"].source == "/srv/pd" and mounts["/pipe-dream"].read_only
    ws = mounts["/pipe-dream/.claude/users/qa/workspace"]
    assert ws.source == "/srv/pd/.claude/users/qa/workspace" and not ws.read_only
    assert mounts["/projects"].kind is layout.MountKind.VOLUME and mounts["/projects"].source == "p-qa-projects"
    assert mounts["/.ssh/id_ed25519"].read_only and mounts["/.ssh/id_ed25519"].source == "/keys/k"
    assert lay.workspace_host == Path("/srv/pd/.claude/users/qa/workspace")
    assert lay.inbox_host == Path("/srv/pd/.claude/users/qa/inbox")


def test_no_deploy_key_no_mount():
    assert all(m.target != "/.ssh/id_ed25519" for m in layout.resolve("claude", Path("/r")).mounts)


@pytest.mark.parametrize("bad", ["Claude", "../x", "a/b", "", "with space", "é"])
def test_bad_agent_ids_refused(bad):
    with pytest.raises(InvalidAgentId):
        layout.resolve(bad, Path("/r"))
    with pytest.raises(InvalidAgentId):
        layout.workspace_dir(Path("/r"), bad)


def test_mcp_config_is_the_vision_json():
    assert layout.mcp_config("http://host.docker.internal:8000/sse") == {
        "mcpServers": {"qms": {"type": "sse", "url": "http://host.docker.internal:8000/sse"}}}
    assert layout.mcp_config("http://h:8000/mcp")["mcpServers"]["qms"]["type"] == "http"


def test_named_rules_and_workspace_target():
    lay = layout.resolve("qa", Path("/r"))
    assert lay.workspace_rule.container_path == "/pipe-dream/.claude/users/qa/workspace"
    assert lay.inbox_rule.read_only
    assert layout.agent_from_workspace_path(lay.workspace_rule.container_path) == "qa"
    assert layout.agent_from_workspace_path("/pipe-dream/QMS") is None


def test_trailing_newline_is_not_an_agent_id():
    with pytest.raises(InvalidAgentId):
        layout.resolve("claude\n", Path("/r"))
