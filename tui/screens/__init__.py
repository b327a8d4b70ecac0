"""The panel's screens and dialogs, one per module."""
