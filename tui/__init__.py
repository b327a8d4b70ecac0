"""qms-panel terminal app and command line."""
