"""The agent gateway (``qms-panel gateway``): it sits where agent containers reach the QMS MCP server,
binds each connection to the agent of the container it comes from, forwards to the real server, and
turns every message into a typed event (:mod:`core.gateway.events`) on a live feed for the panel.
"""
