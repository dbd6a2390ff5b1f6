"""The small state object long-running work reports through (after Orange3's TaskState).

Used by the GUI's classification jobs and by training alike; the terminal front end prints a progress bar
from it, the Qt adapter turns it into signals.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from lesion_desktop.errors import CancelledError


class Progress(Protocol):
    def report(self, fraction: float, message: str) -> None: ...
    def cancelled(self) -> bool: ...
    def partial(self, value: Any) -> None: ...


class TaskState:
    """Default implementation: a cancel flag plus optional callbacks."""

    def __init__(self, on_report: Any = None, on_partial: Any = None) -> None:
        self._cancel = threading.Event()
        self._on_report = on_report
        self._on_partial = on_partial

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, fraction: float, message: str) -> None:
        if self._on_report is not None:
            self._on_report(fraction, message)

    def partial(self, value: Any) -> None:
        if self._on_partial is not None:
            self._on_partial(value)


def check_cancel(progress: Progress | None) -> None:
    if progress is not None and progress.cancelled():
        raise CancelledError("Cancelled by the user; the active models were not changed.")


class TerminalProgress(TaskState):
    """A tqdm bar for the command line; Ctrl+C cancels cooperatively."""

    def __init__(self, desc: str = "") -> None:
        super().__init__()
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def report(self, fraction: float, message: str) -> None:
        n = int(max(0.0, min(1.0, fraction)) * 1000)
        self._bar.n = n
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class ScaledProgress:
    """Maps a sub-task's 0..1 onto [lo, hi] of the whole, and tags its partial events."""

    def __init__(self, outer: Progress | None, lo: float, hi: float, prefix: str = "",
                 tags: dict[str, Any] | None = None) -> None:
        self.outer, self.lo, self.hi, self.prefix, self.tags = outer, lo, hi, prefix, tags or {}

    def report(self, fraction: float, message: str) -> None:
        if self.outer is not None:
            self.outer.report(self.lo + (self.hi - self.lo) * max(0.0, min(1.0, fraction)), self.prefix + message)

    def cancelled(self) -> bool:
        return self.outer is not None and self.outer.cancelled()

    def partial(self, value: Any) -> None:
        if self.outer is not None:
            self.outer.partial({**value, **self.tags} if isinstance(value, dict) else value)
