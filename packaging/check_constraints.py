"""Say whether the installed packages are the release build's versions (packaging/constraints-release.txt).

    python packaging/check_constraints.py [--strict] [CONSTRAINTS]

Prints each installed package whose version differs from its pin. Exit 1 with --strict when any does (a release
build), else 0: a developer's build from a drifted environment is allowed and says so. Packages pinned but not
installed here (the other platform's) are ignored.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "constraints-release.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m is None:
            raise ValueError(f"{path}: not an exact pin: {line!r}")
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def drift(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """'name: installed X, pinned Y' for each installed package off its pin (a local label such as +cu130 is fine)."""
    out = []
    for name, pinned in sorted(pins.items()):
        have = installed.get(name)
        if have is not None and have.split("+", 1)[0] != pinned:
            out.append(f"{name}: installed {have}, pinned {pinned}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("constraints", nargs="?", type=Path, default=DEFAULT)
    p.add_argument("--strict", action="store_true", help="exit 1 when a package is off its pin")
    args = p.parse_args(argv)
    off = drift(read_pins(args.constraints), installed_versions())
    for line in off:
        print(line)
    print(f"{len(off)} installed package(s) differ from {args.constraints.name}"
          + ("" if off else ": this is the release build's environment"))
    return 1 if off and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
