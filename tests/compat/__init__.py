"""Compatibility with inspect_ai: its signatures, its sandbox providers, the migration page."""
