"""Compare two `lesion-desktop classify` CSVs: same rows, same predictions, probabilities within a tolerance.

    python packaging/compare_csv.py reference.csv frozen.csv --tolerance 1e-4
    python packaging/compare_csv.py a.csv b.csv --by-name   # rows matched by file name, not the path as typed

Prints one line of figures; exits 1 when a row is missing, a prediction differs or |dp| > tolerance.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def read(path: Path, by_name: bool = False) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {(row["path"].replace("\\", "/").rsplit("/", 1)[-1] if by_name else row["path"]): row
                for row in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--by-name", action="store_true",
                   help="match rows by file name (the two runs typed the paths differently)")
    args = p.parse_args(argv)
    ref, got = read(args.reference, args.by_name), read(args.candidate, args.by_name)
    missing = sorted(set(ref) ^ set(got))
    common = [k for k in ref if k in got]
    same = sum(ref[k]["prediction"] == got[k]["prediction"] for k in common)
    diffs = [abs(float(ref[k][c]) - float(got[k][c])) for k in common for c in CLASSES
             if ref[k][c] and got[k][c]]
    worst = max(diffs, default=0.0)
    ok = not missing and same == len(common) and worst <= args.tolerance and len(common) > 0
    print(f"{args.candidate.name}: {len(common)} rows, same prediction {same}/{len(common)}, "
          f"max abs diff {worst:.1e} (tolerance {args.tolerance:g}), rows only in one file: {len(missing)}"
          f" -> {'MATCH' if ok else 'MISMATCH'}")
    for k in missing[:5]:
        print(f"  only in one file: {k}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
