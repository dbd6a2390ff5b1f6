"""Moved to `lesion_desktop.progress` (the GUI's classification uses it too); kept so old imports work."""

from lesion_desktop.progress import Progress, ScaledProgress, TaskState, TerminalProgress, check_cancel

__all__ = ["Progress", "ScaledProgress", "TaskState", "TerminalProgress", "check_cancel"]
