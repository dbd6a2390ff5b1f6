"""The command line: `lesion-desktop classify PATH... --output preds.csv` (batch classification), and the
options of the desktop application (`lesion-desktop [gui] [IMAGE] [--open PATH] ...`), parsed here so that
`--help` and mistakes are answered without starting Qt.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lesion_desktop.classes import CLASS_CODES
from lesion_desktop.errors import LesionError

CSV_COLUMNS = ["path", "prediction", *CLASS_CODES, "warnings"]
BATCH = 16
GUI_REQUESTED = -1
# Qt's own command-line options that take a value (QGuiApplication and QApplication): passed on to Qt.
QT_OPTIONS_WITH_VALUE = frozenset({
    "-platform", "-platformpluginpath", "-platformtheme", "-plugin", "-qwindowgeometry", "-qwindowicon",
    "-qwindowtitle", "-session", "-style", "-stylesheet", "-display", "-geometry", "-name", "-title", "-visual",
})


def say(message: str) -> None:
    """A line for the user on stderr. A windowed program (PyInstaller on Windows) has no stderr at all
    (sys.stderr is None): then the exit status and the CSV are all it gives."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(message, file=stream, flush=True)
    except (OSError, ValueError):  # a closed pipe or stream: nobody is reading
        pass


def is_terminal(stream: object) -> bool:
    """True for an interactive terminal; False for a file, a pipe, a closed stream or none (windowed program)."""
    try:
        return bool(stream is not None and stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def iter_inputs(paths: list[str]) -> Iterator[Path]:
    """Files as given (whatever their suffix: the loader judges them); folders searched recursively."""
    from lesion_desktop.imageio import IMAGE_SUFFIXES

    for p in map(Path, paths):
        if p.is_dir():
            found = False
            for dirpath, dirnames, files in os.walk(p):
                dirnames.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                        found = True
                        yield Path(dirpath) / f
            if not found:  # the loader's "is a folder" row tells the user it gave nothing to classify
                yield p
        else:
            yield p


def classify(paths: list[str], output: Path, models: Path | None, device: str = "auto", tta: bool = False,
             progress_bar: bool | None = None, backend: str = "auto") -> tuple[int, int]:
    """Write the CSV; returns (classified, failed). Unreadable files get a row with the reason.

    `models` None: the active models, falling back (with a note) when the installed ones are damaged.
    """
    from lesion_desktop.analysis import row_warnings
    from lesion_desktop.imageio import load_image, quality_check
    from lesion_desktop.inference import open_engine

    engine, notes = open_engine(models_dir=models, device=device, tta=tta, backend=backend)
    for note in (*notes, engine.device_note):
        if note:
            say(f"note: {note}")
    files = list(iter_inputs(paths))
    show = is_terminal(sys.stderr) if progress_bar is None else progress_bar and sys.stderr is not None
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="classify", file=sys.stderr)
    ok = failed = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for start in range(0, len(files), BATCH):
            chunk = files[start : start + BATCH]
            images, good, warns = [], [], []
            for path in chunk:
                try:
                    img = load_image(path)
                except LesionError as e:
                    writer.writerow([str(path), "", *[""] * len(CLASS_CODES), str(e)])
                    failed += 1
                    continue
                images.append(img)
                good.append(path)
                warns.append(quality_check(img))
            for path, img, pred, w in zip(good, images, engine.predict(images), warns, strict=True):
                row = row_warnings(engine, img, pred, w)
                writer.writerow([str(path), pred.top_code, *(f"{p:.6f}" for p in pred.probabilities), "; ".join(row)])
                ok += 1
            if bar is not None:
                bar.update(len(chunk))
    os.replace(tmp, output)
    if bar is not None:
        bar.close()
    return ok, failed


def _window_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1400x900, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"expected a positive WIDTHxHEIGHT, got {text!r}")
    return w, h


def add_gui_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", type=Path, metavar="IMAGE",
                   help="an image to classify at start-up (what 'Open with' passes); the same as --open")
    p.add_argument("--open", metavar="PATH", type=Path, help="classify this image at start-up")
    p.add_argument("--models", metavar="DIR", type=Path,
                   help="use this ensemble or bundle folder for this session only (default: the active models)")
    p.add_argument("--screenshot", metavar="OUT", type=Path,
                   help="save a picture of the window (PNG) once the first result is shown")
    p.add_argument("--quit-after-result", dest="quit_after_result", action="store_true",
                   help="quit once the first result is shown (exit status 1 if it failed); with --open, a check "
                        "that the program works")
    p.add_argument("--size", metavar="WxH", type=_window_size, help="window size in pixels, e.g. 1400x900")


_GUI_EPILOG = "Qt's own options (e.g. -style fusion, -platform offscreen) are passed on to Qt."
_GUI_DESCRIPTION = "Start the desktop application: decision support for dermoscopy images (not a diagnosis)."


def gui_parser(prog: str = "lesion-desktop gui") -> argparse.ArgumentParser:
    """The desktop application's options (`lesion-desktop gui ...`, or no command at all)."""
    p = argparse.ArgumentParser(prog=prog, description=_GUI_DESCRIPTION, epilog=_GUI_EPILOG)
    add_gui_options(p)
    return p


def classify_parser() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(prog="lesion-desktop classify",
                                description="Classify image files and folders (searched recursively) into a CSV: "
                                            f"{','.join(CSV_COLUMNS)}. Decision support, not a diagnosis.")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    c.add_argument("--output", "-o", required=True, type=Path, metavar="CSV",
                   help="CSV file to write (its folder is created)")
    c.add_argument("--models", type=Path, default=None, metavar="DIR",
                   help="ensemble or bundle folder (default: the active models)")
    c.add_argument("--device", default="auto", help="auto (the default), cpu, cuda or cuda:N")
    c.add_argument("--tta", action="store_true", help="test-time augmentation: flips, 90-degree rotations")
    c.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime on the CPU where the models have a graph, else PyTorch; "
                   "onnx: ONNX Runtime wherever possible; torch: PyTorch only")
    return c


def build_parser() -> argparse.ArgumentParser:
    """`lesion-desktop --help`: the application's options, and the commands."""
    p = argparse.ArgumentParser(
        prog="lesion-desktop", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="lesion-desktop [gui] [IMAGE] [--open PATH] [--models DIR] [--screenshot OUT] [--quit-after-result]"
              " [--size WxH]\n       lesion-desktop classify PATH... --output CSV [--models DIR] [--device DEVICE]"
              " [--tta] [--backend {auto,torch,onnx}]\n       lesion-desktop export OUTPUT_DIR [--patient ID]",
        description="Skin-lesion decision support for dermoscopy images (not a diagnosis).\n"
                    "With no command, or with 'gui', it starts the desktop application with the options below.",
        epilog="commands:\n"
               "  gui        start the desktop application (the default); takes the options above\n"
               "  classify   classify images or folders into a CSV (lesion-desktop classify --help)\n"
               "  export     export the records: CSV, original images, training set (lesion-desktop export --help)"
               "\n\n"
               + _GUI_EPILOG)
    add_gui_options(p)
    return p


def split_qt_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our arguments apart from Qt's (single-dash options, with the value of those that take one)."""
    ours: list[str] = []
    qt: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            ours.extend(argv[i:])
            break
        if a.startswith("-") and not a.startswith("--") and len(a) > 2:
            qt.append(a)
            if a in QT_OPTIONS_WITH_VALUE and i + 1 < len(argv):
                qt.append(argv[i + 1])
                i += 1
        else:
            ours.append(a)
        i += 1
    return ours, qt


def parse_gui_args(argv: list[str], prog: str = "lesion-desktop") -> tuple[argparse.Namespace, list[str]]:
    """The application's options from `argv` (no program name) and the arguments left for Qt.

    IMAGE and --open are one option: `args.open` holds whichever was given.
    """
    ours, qt = split_qt_args(argv)
    parser = build_parser() if prog == "lesion-desktop" else gui_parser(prog)
    args = parser.parse_args(ours)
    if args.image is not None:
        if args.open is not None:
            parser.error("give the image once: as IMAGE or with --open")
        args.open = args.image
    return args, qt


def main(argv: list[str] | None = None) -> int:
    """`classify` runs here. Anything else is the application's options: they are checked (and --help
    answered) here, then GUI_REQUESTED tells lesion_desktop.__main__ to start Qt; the CLI never imports Qt."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:  # the clinic records (issue 15): no models, no Qt
        from lesion_desktop.export import export_parser, run_export_command

        return run_export_command(export_parser().parse_args(argv[1:]))
    if argv[:1] != ["classify"]:
        if argv[:1] == ["gui"]:
            parse_gui_args(argv[1:], prog="lesion-desktop gui")
        else:
            parse_gui_args(argv)
        return GUI_REQUESTED
    args = classify_parser().parse_args(argv[1:])
    try:
        ok, failed = classify(args.paths, args.output, args.models, args.device, args.tta, backend=args.backend)
    except LesionError as e:
        say(f"error: {e}")
        return 2
    say(f"{ok} classified, {failed} could not be read; results in {args.output}")
    return 0 if ok > 0 else 1
