"""The live demo's agents: a small busybox image built locally (no registry), a scripted routine
that does real QMS work over MCP through the gateway, and what launches, runs and removes them."""
