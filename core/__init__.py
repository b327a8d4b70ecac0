"""qms-panel core: the headless library (no Textual, no Rich)."""
