"""The panes, one per module; each takes plain core models and does no I/O."""
