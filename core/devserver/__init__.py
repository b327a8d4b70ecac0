"""A QMS MCP development server with the real contract, for ``qms-panel --demo`` and the tests.

- :mod:`core.devserver.store`: the QMS file semantics of qms-cli (texts, .meta, .audit, workspaces);
- :mod:`core.devserver.server`: the MCP server over SSE or streamable HTTP, and a child-process handle;
- :mod:`core.devserver.sample`: a sample project (``init_project``);
- ``python -m core.devserver``: run it (the same as ``qms-panel devserver``).
"""
