"""Claude Code's own telemetry and hooks: the gateway's receiver (OTLP/HTTP logs and metrics, HTTP
hooks), and the per-agent activity the panel shows (:mod:`core.telemetry.activity`)."""
