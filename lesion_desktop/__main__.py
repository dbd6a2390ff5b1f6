"""Entry point of `lesion-desktop`, `lesion-desktop-gui` and of the frozen program."""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    """`classify` runs without Qt; anything else (no command, `gui`, an image path) starts the application."""
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if argv[:1] == ["export"] and not {"-h", "--help", "--no-pdf"} & set(argv):
        from lesion_desktop.qt.app import export_with_reports  # the PDF reports are drawn with Qt

        return export_with_reports(argv[1:])
    from lesion_desktop.cli import GUI_REQUESTED
    from lesion_desktop.cli import main as cli_main

    code = cli_main(argv)  # also checks the application's options and answers --help, before Qt starts
    if code != GUI_REQUESTED:
        return code
    if argv[:1] == ["gui"]:
        argv = argv[1:]
    from lesion_desktop.qt.app import run_gui

    return run_gui([sys.argv[0], *argv])


if __name__ == "__main__":
    sys.exit(main())
