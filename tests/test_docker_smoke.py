"""The engine CI starts really runs a container from a locally imported image."""

import pytest

pytestmark = pytest.mark.docker


def test_runs_a_container_from_the_imported_image(docker_client, test_image, unique_prefix):
    out = docker_client.containers.run(
        test_image, ["sh", "-c", "echo hello from $HOME; cat /.mcp.json"],
        name=f"{unique_prefix}smoke", remove=True, labels={"qms-panel.test": "1"},
    )
    text = out.decode()
    assert "hello from /" in text
    assert "host.docker.internal:8000/sse" in text
