"""Subcommands of qms-panel, one per module (NAME, HELP, add_arguments, run)."""
