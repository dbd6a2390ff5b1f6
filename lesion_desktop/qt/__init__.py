"""Widgets, Qt threads and the main window: the only place Qt is imported."""
