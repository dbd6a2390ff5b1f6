"""Entry point of `lesion-desktop` and of the frozen program."""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if argv and argv[0] in ("classify", "gui", "-h", "--help"):
        from lesion_desktop.cli import GUI_REQUESTED
        from lesion_desktop.cli import main as cli_main

        code = cli_main(argv)
        if code != GUI_REQUESTED:
            return code
        argv = argv[1:]
    from lesion_desktop.qt.app import run_gui

    return run_gui([sys.argv[0], *argv])


if __name__ == "__main__":
    sys.exit(main())
